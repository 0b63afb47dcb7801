package codec

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Factory builds a codec with the given frame limit (0 = DefaultMaxFrameSize).
type Factory func(maxFrameSize int) (Codec, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes a codec available by name. It panics on a duplicate name,
// as registration happens in init functions.
func Register(name string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("codec: Register called twice for " + name)
	}
	registry[name] = f
}

// ErrDuplicateCodec is returned by TryRegister for a name already taken.
var ErrDuplicateCodec = errors.New("codec: codec already registered")

// TryRegister is Register for codecs added at run time (declarative codecs
// named in a config file): a duplicate name is an error, not a panic.
func TryRegister(name string, f Factory) error {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateCodec, name)
	}
	registry[name] = f
	return nil
}

// New builds the codec registered under name.
func New(name string, maxFrameSize int) (Codec, error) {
	regMu.RLock()
	f, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (registered: %v)", ErrUnknownCodec, name, Names())
	}
	return f(maxFrameSize)
}

// Names lists registered codec names, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
