package resilience

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/meshgate/meshgate/meshgate/config"
)

// Switch is a service switch: while off, the routes naming it answer at
// once with its static Reply and never reach their upstream. Config sets
// the state; the admin API can override it at run time, and the override
// survives config reloads until cleared.
type Switch struct {
	name     string
	cfgOff   bool
	override atomic.Int32 // 0 none, 1 off, 2 on
	hits     atomic.Int64
	Reply    Reply
}

// Reply is an off switch's static answer.
type Reply struct {
	Result  uint32 // MGP result; 0 = success with Body
	Message string
	Body    []byte
}

// Off reports whether the switch is off now; each true counts one hit.
func (s *Switch) Off() bool {
	if s == nil {
		return false
	}
	off := s.cfgOff
	switch s.override.Load() {
	case 1:
		off = true
	case 2:
		off = false
	}
	if off {
		s.hits.Add(1)
	}
	return off
}

// Switches is the set of named switches of one config generation.
type Switches struct{ m map[string]*Switch }

// NewSwitches builds the switches of cfg (after defaults), keeping the
// admin overrides of prev (nil on first build).
func NewSwitches(cfg []config.Switch, prev *Switches) *Switches {
	s := &Switches{m: make(map[string]*Switch, len(cfg))}
	for _, c := range cfg {
		sw := &Switch{name: c.Name, cfgOff: c.Off, Reply: Reply{Message: c.Reply.Message, Body: []byte(c.Reply.Body)}}
		if c.Reply.Result != nil {
			sw.Reply.Result = *c.Reply.Result
		}
		if sw.Reply.Result != 0 && sw.Reply.Message == "" {
			sw.Reply.Message = ErrSwitchedOff.Error()
		}
		if p := prev.Get(c.Name); p != nil {
			sw.override.Store(p.override.Load())
			sw.hits.Store(p.hits.Load())
		}
		s.m[c.Name] = sw
	}
	return s
}

// Get returns the named switch, or nil.
func (s *Switches) Get(name string) *Switch {
	if s == nil {
		return nil
	}
	return s.m[name]
}

type switchState struct {
	Name     string `json:"name"`
	Off      bool   `json:"off"`
	Config   bool   `json:"config_off"`
	Override string `json:"override,omitempty"`
	Hits     int64  `json:"hits"`
}

func (s *Switch) state() switchState {
	st := switchState{Name: s.name, Config: s.cfgOff, Off: s.cfgOff, Hits: s.hits.Load()}
	switch s.override.Load() {
	case 1:
		st.Off, st.Override = true, "off"
	case 2:
		st.Off, st.Override = false, "on"
	}
	return st
}

// Handler serves the admin API over the switches current() returns:
//
//	GET    /switches             list, JSON
//	POST   /switches/NAME?off=1  override: off (off=1) or on (off=0)
//	DELETE /switches/NAME        clear the override (back to config)
//
// Mount it at "/switches" and "/switches/" on the admin (not the health)
// address.
func Handler(current func() *Switches) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := current()
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/switches"), "/")
		if name == "" {
			if r.Method != http.MethodGet {
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			out := []switchState{}
			if s != nil {
				for _, sw := range s.m {
					out = append(out, sw.state())
				}
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(out)
			return
		}
		sw := s.Get(name)
		if sw == nil {
			http.Error(w, "unknown switch "+name, http.StatusNotFound)
			return
		}
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost, http.MethodPut:
			switch r.URL.Query().Get("off") {
			case "1", "true":
				sw.override.Store(1)
			case "0", "false":
				sw.override.Store(2)
			default:
				http.Error(w, "off must be 1|true or 0|false", http.StatusBadRequest)
				return
			}
		case http.MethodDelete:
			sw.override.Store(0)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sw.state())
	})
}
