package main

import (
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshgate/meshgate/codec/mgp"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

// newOps builds the host operations for a connection; tests replace it.
var newOps = func() ops { return sdkOps{} }

var errNotSupported = errors.New("not supported by host")

type sdkOps struct{}

func (sdkOps) Replace(downstream bool, data []byte) error {
	if downstream {
		return proxywasm.ReplaceDownstreamData(data)
	}
	return proxywasm.ReplaceUpstreamData(data)
}

func (sdkOps) Close() error {
	err := proxywasm.CloseDownstream()
	if uerr := proxywasm.CloseUpstream(); err == nil {
		err = uerr
	}
	return err
}

func logWarn(msg string) { proxywasm.LogWarn(msg) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	cfg   *Config
	codec *mgp.Codec
	stats *stats
}

// OnPluginStart reads and validates the JSON plugin configuration; a bad
// configuration fails the plugin (Envoy rejects the listener) with a log
// line naming the field.
func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	var data []byte
	if size > 0 {
		var err error
		if data, err = proxywasm.GetPluginConfiguration(); err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			proxywasm.LogCriticalf("mgp filter: reading plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		proxywasm.LogCritical(err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.cfg, p.codec = cfg, mgp.New(cfg.MaxFrameSize)
	if p.stats == nil {
		p.stats = newStats()
	}
	proxywasm.LogInfof("mgp filter: started (allow=%v deny=%v max_frame_size=%d on_malformed=%s)", cfg.AllowCmds, cfg.DenyCmds, cfg.MaxFrameSize, cfg.OnMalformed)
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewTcpContext(uint32) types.TcpContext {
	return &tcpContext{c: newConn(p.cfg, p.codec, p.stats, newOps())}
}

type tcpContext struct {
	types.DefaultTcpContext
	c *conn
}

func (t *tcpContext) handle(downstream bool, size int, eos bool) types.Action {
	if size == 0 || t.c.passthrough || t.c.closed {
		return types.ActionContinue
	}
	get := proxywasm.GetUpstreamData
	if downstream {
		get = proxywasm.GetDownstreamData
	}
	data, err := get(0, size)
	if err != nil {
		return types.ActionContinue
	}
	out, replace := t.c.onData(downstream, data, eos)
	if replace {
		if err := t.c.ops.Replace(downstream, out); err != nil {
			proxywasm.LogWarnf("mgp filter: replacing buffer: %v", err)
		}
	}
	return types.ActionContinue
}

func (t *tcpContext) OnDownstreamData(size int, eos bool) types.Action {
	return t.handle(true, size, eos)
}

func (t *tcpContext) OnUpstreamData(size int, eos bool) types.Action {
	return t.handle(false, size, eos)
}
