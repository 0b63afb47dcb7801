package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Metric names, as they appear in Envoy's /stats (Envoy prefixes custom
// wasm metrics with "wasmcustom."):
//
//	mgp.cmd.<cmd>.requests                 counter: request frames seen
//	mgp.cmd.<cmd>.denied                   counter: requests refused by policy
//	mgp.cmd.<cmd>.responses.result.<code>  counter: response frames by result
//	mgp.cmd.<cmd>.latency_us               histogram: request→response, matched by seq
//	mgp.malformed                          counter: connections cut by a malformed frame
//	mgp.denied                             counter: all refused requests
//	mgp.responses.unmatched                counter: responses with no tracked request
//
// A metric is defined once, the first time its command (or result) is
// seen, and cached: steady state defines nothing. Commands and results
// come from the wire, so their number is capped: past maxCmds distinct
// commands (maxResults distinct cmd/result pairs) the rest are counted
// under the command name "other" (result "other"), keeping Envoy's stat
// memory bounded whatever a client sends.

// Cardinality caps for wire-chosen metric names.
const (
	maxCmds    = 512
	maxResults = 2048
)

type cmdStats struct {
	requests, denied proxywasm.MetricCounter
	latency          proxywasm.MetricHistogram
}

type stats struct {
	malformed, denied, unmatched proxywasm.MetricCounter
	cmds                         map[uint32]*cmdStats
	results                      map[uint64]proxywasm.MetricCounter
	otherCmd                     *cmdStats
	otherResult                  proxywasm.MetricCounter
	haveOther                    bool // otherResult is defined
}

func newStats() *stats {
	return &stats{
		malformed: proxywasm.DefineCounterMetric("mgp.malformed"),
		denied:    proxywasm.DefineCounterMetric("mgp.denied"),
		unmatched: proxywasm.DefineCounterMetric("mgp.responses.unmatched"),
		cmds:      make(map[uint32]*cmdStats),
		results:   make(map[uint64]proxywasm.MetricCounter),
	}
}

func defineCmd(p string) *cmdStats {
	return &cmdStats{
		requests: proxywasm.DefineCounterMetric(p + "requests"),
		denied:   proxywasm.DefineCounterMetric(p + "denied"),
		latency:  proxywasm.DefineHistogramMetric(p + "latency_us"),
	}
}

func cmdPrefix(cmd uint32) string { return "mgp.cmd." + strconv.FormatUint(uint64(cmd), 10) + "." }

func (s *stats) cmd(cmd uint32) *cmdStats {
	if cs, ok := s.cmds[cmd]; ok {
		return cs
	}
	if len(s.cmds) >= maxCmds {
		if s.otherCmd == nil {
			s.otherCmd = defineCmd("mgp.cmd.other.")
		}
		return s.otherCmd
	}
	cs := defineCmd(cmdPrefix(cmd))
	s.cmds[cmd] = cs
	return cs
}

func (s *stats) result(cmd uint32, result uint16) proxywasm.MetricCounter {
	k := uint64(cmd)<<16 | uint64(result)
	if c, ok := s.results[k]; ok {
		return c
	}
	if len(s.results) >= maxResults {
		if !s.haveOther {
			s.otherResult, s.haveOther = proxywasm.DefineCounterMetric("mgp.cmd.other.responses.result.other"), true
		}
		return s.otherResult
	}
	c := proxywasm.DefineCounterMetric(cmdPrefix(cmd) + "responses.result." + strconv.FormatUint(uint64(result), 10))
	s.results[k] = c
	return c
}
