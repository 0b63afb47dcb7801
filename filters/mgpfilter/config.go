package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshgate/meshgate/codec"
)

// Malformed-frame actions.
const (
	OnMalformedClose = "close" // close the connection (default)
	OnMalformedPass  = "pass"  // stop parsing this connection, pass bytes through
)

// Config is the plugin configuration (JSON).
//
//	{"allow_cmds": [1, 2], "deny_cmds": [9], "max_frame_size": 4194304, "on_malformed": "close"}
//
// With allow_cmds set, only those commands pass; deny_cmds are refused in
// any case. A refused request is answered with a response frame carrying
// result 4 (forbidden) and is not forwarded.
type Config struct {
	AllowCmds    []uint32 `json:"allow_cmds"`
	DenyCmds     []uint32 `json:"deny_cmds"`
	MaxFrameSize int      `json:"max_frame_size"`
	OnMalformed  string   `json:"on_malformed"`

	allow, deny map[uint32]bool
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("mgp filter: invalid plugin configuration")

// ParseConfig decodes and validates the plugin configuration. Empty input
// means defaults. Each error names its field.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	var errs []error
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = codec.DefaultMaxFrameSize
	}
	if c.MaxFrameSize < 64 || c.MaxFrameSize > 64<<20 {
		errs = append(errs, fmt.Errorf("%w: max_frame_size: must be in [64, 67108864], got %d", ErrConfig, c.MaxFrameSize))
	}
	switch c.OnMalformed {
	case "":
		c.OnMalformed = OnMalformedClose
	case OnMalformedClose, OnMalformedPass:
	default:
		errs = append(errs, fmt.Errorf("%w: on_malformed: must be %q or %q, got %q", ErrConfig, OnMalformedClose, OnMalformedPass, c.OnMalformed))
	}
	c.allow = toSet(c.AllowCmds)
	c.deny = toSet(c.DenyCmds)
	for cmd := range c.deny {
		if c.allow[cmd] {
			errs = append(errs, fmt.Errorf("%w: deny_cmds: cmd %d is also in allow_cmds", ErrConfig, cmd))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func toSet(cmds []uint32) map[uint32]bool {
	if len(cmds) == 0 {
		return nil
	}
	m := make(map[uint32]bool, len(cmds))
	for _, c := range cmds {
		m[c] = true
	}
	return m
}

// Allowed reports whether a request with cmd may pass.
func (c *Config) Allowed(cmd uint32) bool {
	if c.deny[cmd] {
		return false
	}
	return c.allow == nil || c.allow[cmd]
}

// policy reports whether any allow/deny rule is configured; without one
// the filter only observes and never rewrites Envoy's buffers.
func (c *Config) policy() bool { return c.allow != nil || c.deny != nil }
