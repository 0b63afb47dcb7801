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
// seen, and cached: steady state defines nothing.

type cmdStats struct {
	requests, denied proxywasm.MetricCounter
	latency          proxywasm.MetricHistogram
}

type stats struct {
	malformed, denied, unmatched proxywasm.MetricCounter
	cmds                         map[uint32]*cmdStats
	results                      map[uint64]proxywasm.MetricCounter
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

func cmdPrefix(cmd uint32) string { return "mgp.cmd." + strconv.FormatUint(uint64(cmd), 10) + "." }

func (s *stats) cmd(cmd uint32) *cmdStats {
	if cs, ok := s.cmds[cmd]; ok {
		return cs
	}
	p := cmdPrefix(cmd)
	cs := &cmdStats{
		requests: proxywasm.DefineCounterMetric(p + "requests"),
		denied:   proxywasm.DefineCounterMetric(p + "denied"),
		latency:  proxywasm.DefineHistogramMetric(p + "latency_us"),
	}
	s.cmds[cmd] = cs
	return cs
}

func (s *stats) result(cmd uint32, result uint16) proxywasm.MetricCounter {
	k := uint64(cmd)<<16 | uint64(result)
	if c, ok := s.results[k]; ok {
		return c
	}
	c := proxywasm.DefineCounterMetric(cmdPrefix(cmd) + "responses.result." + strconv.FormatUint(uint64(result), 10))
	s.results[k] = c
	return c
}
