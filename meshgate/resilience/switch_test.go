package resilience

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
)

func TestSwitchesAdminAPI(t *testing.T) {
	six := uint32(6)
	cfg := []config.Switch{{Name: "recommend", Reply: config.SwitchReply{Result: &six, Message: "feature off"}}, {Name: "gift", Off: true}}
	cur := NewSwitches(cfg, nil)
	srv := httptest.NewServer(Handler(func() *Switches { return cur }))
	defer srv.Close()
	do := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	rec, gift := cur.Get("recommend"), cur.Get("gift")
	if rec.Off() || !gift.Off() {
		t.Fatal("config state not applied")
	}
	if code, body := do("POST", "/switches/recommend?off=1"); code != 200 || !strings.Contains(body, `"off":true`) {
		t.Fatalf("POST off: %d %s", code, body)
	}
	if !rec.Off() || rec.Reply.Result != 6 || rec.Reply.Message != "feature off" {
		t.Fatalf("switch not off after admin POST: %+v", rec.Reply)
	}
	// The override survives a reload.
	cur = NewSwitches(cfg, cur)
	if !cur.Get("recommend").Off() {
		t.Fatal("admin override lost on reload")
	}
	if code, _ := do("DELETE", "/switches/recommend"); code != 200 || cur.Get("recommend").Off() {
		t.Fatal("DELETE did not restore the config state")
	}
	if code, _ := do("POST", "/switches/gift?off=0"); code != 200 || cur.Get("gift").Off() {
		t.Fatal("POST off=0 did not turn the switch on")
	}
	if code, body := do("GET", "/switches"); code != 200 || !strings.Contains(body, `"name":"gift"`) || !strings.Contains(body, `"override":"on"`) {
		t.Fatalf("GET list: %d %s", code, body)
	}
	if code, _ := do("POST", "/switches/nope?off=1"); code != 404 {
		t.Fatalf("unknown switch: %d, want 404", code)
	}
	if code, _ := do("POST", "/switches/gift?off=maybe"); code != 400 {
		t.Fatalf("bad off value: %d, want 400", code)
	}
	var none *Switch
	if none.Off() {
		t.Fatal("nil switch is off")
	}
}
