package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrHTTPStatus reports an HTTP reply with a status other than 200.
var ErrHTTPStatus = errors.New("bench: HTTP status")

// JSONPath is the path the HTTP/1.1 JSON scenarios POST to: the
// transcoder's auto-mapped path of demo.Echo/Echo, served the same way
// by the direct Go server.
const JSONPath = EchoMethod

// jsonMsg is the JSON form of the transcoder's demo.Msg.
type jsonMsg struct {
	Body string `json:"body"`
}

// httpJSONClient posts {"body": payload} over HTTP/1.1 keep-alive
// connections. HTTP/1.1 has one request in flight per connection, so the
// transport opens more connections when requests overlap; conns are
// opened (and checked) up front.
type httpJSONClient struct {
	url    string
	hc     *http.Client
	tr     *http.Transport
	ctx    context.Context
	cancel context.CancelFunc
	// body caches the JSON request of the current payload (closed-loop
	// workers call Go concurrently).
	mu      sync.Mutex
	body    []byte
	bodyFor []byte
}

// DialHTTPJSON returns a client of the JSON echo at addr with n warm
// connections.
func DialHTTPJSON(addr string, n int) (Client, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	c := &httpJSONClient{url: "http://" + addr + JSONPath, tr: tr, hc: &http.Client{Transport: tr}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// n overlapping requests open n connections.
	errs := make(chan error, n)
	for range n {
		go func() { errs <- c.do(ctx, c.request([]byte("warm")), 4) }()
	}
	for range n {
		if err := <-errs; err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bench: first JSON call to %s: %w", addr, err)
		}
	}
	return c, nil
}

func (c *httpJSONClient) request(payload []byte) []byte {
	b, _ := json.Marshal(jsonMsg{Body: string(payload)})
	return b
}

// do posts body and checks the reply: 200 and at least want bytes.
func (c *httpJSONClient) do(ctx context.Context, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w %d: %s", ErrHTTPStatus, resp.StatusCode, firstLine(string(rb)))
	}
	if len(rb) < want {
		return fmt.Errorf("%w: %d < %d", ErrShortReply, len(rb), want)
	}
	return nil
}

func (c *httpJSONClient) Go(_ int, payload []byte, done func(error)) {
	// The payload is the same slice for a whole measurement: encode it
	// once.
	c.mu.Lock()
	if c.body == nil || len(c.bodyFor) != len(payload) || (len(payload) > 0 && &c.bodyFor[0] != &payload[0]) {
		c.body, c.bodyFor = c.request(payload), payload
	}
	body := c.body
	c.mu.Unlock()
	go func() { done(c.do(c.ctx, body, len(payload))) }()
}

func (c *httpJSONClient) Close() error {
	c.cancel()
	c.tr.CloseIdleConnections()
	return nil
}

func (e *env) httpJSONDial(a string) func(int) (Client, error) {
	return func(n int) (Client, error) { return DialHTTPJSON(a, n) }
}

// serveHTTPJSON is the direct JSON baseline: POST JSONPath with
// {"body": s} is decoded and encoded back, the work the transcoder
// path's ends do without the proxy.
func serveHTTPJSON(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+JSONPath, func(w http.ResponseWriter, r *http.Request) {
		var m jsonMsg
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(&m); err != nil {
			log.Debug("bench: JSON reply", "err", err)
		}
	})
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return serveUntil(ctx, func() error { return s.Serve(ln) }, func() { _ = s.Close() })
}
