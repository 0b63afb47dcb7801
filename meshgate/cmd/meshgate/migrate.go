package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshgate/meshgate/meshgate/migrate"
	"github.com/meshgate/meshgate/meshgate/shadow"
)

func init() {
	register(subcommand{Name: "migrate", Short: "migration control of a running MeshGate: status, diffs, rollback, clear", Run: migrateCmd})
}

const migrateUsage = `usage: meshgate migrate <status|diffs|rollback|clear> [flags]

  status                      per route: the split, each side's request rate, error rate, p99, shadow counts
  diffs [-route R] [-n N]     the most recent shadow mismatches, newest first
  rollback ROUTE [-to B] [-reason TEXT]
                              send every request of ROUTE to backend B (default: the base side,
                              backends[0]); TEXT is kept with the override (an incident id, why)
  clear ROUTE                 remove ROUTE's override: the configured split applies again

common flags:
  -admin ADDR       admin address of the running MeshGate (default $MESHGATE_ADMIN or 127.0.0.1:9901)
  -token-file FILE  bearer token for a non-loopback admin (default $MESHGATE_MIGRATE_TOKEN)
  -json             print the admin API's JSON
`

var errUsage = errors.New("see meshgate migrate -h")

// migrateOut is where migrate prints (a test swaps it).
var migrateOut io.Writer = os.Stdout

type migrateClient struct {
	base  string
	token string
	http  *http.Client
}

func migrateCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, migrateUsage)
		return errUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, migrateUsage) // asked for: not an error
		return nil
	}
	verb, args := args[0], args[1:]
	fs, f := migrateFlags(verb)
	admin, tokenFile, asJSON, route, n, to, reason := f.admin, f.tokenFile, f.asJSON, f.route, f.n, f.to, f.reason
	// flags may come before or after the ROUTE argument
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	c := migrateClient{base: adminURL(*admin), token: os.Getenv("MESHGATE_MIGRATE_TOKEN"), http: &http.Client{Timeout: 10 * time.Second}}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		c.token, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	needRoute := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("%s needs exactly one ROUTE argument (see `meshgate migrate status`); %w", verb, errUsage)
		}
		return pos[0], nil
	}
	out := migrateOut
	var (
		raw  []byte
		err  error
		show func() // prints the answer for a person (without -json)
	)
	switch verb {
	case "status":
		var st migrate.Status
		raw, err = c.get(ctx, "/migrate/status", &st)
		show = func() { printStatus(out, &st) }
	case "diffs":
		q := url.Values{"limit": {fmt.Sprint(*n)}}
		if *route != "" {
			q.Set("route", *route)
		}
		var d struct {
			Diffs []shadow.Diff `json:"diffs"`
		}
		raw, err = c.get(ctx, "/migrate/diffs?"+q.Encode(), &d)
		show = func() { printDiffs(out, d.Diffs) }
	case "rollback":
		r, rerr := needRoute()
		if rerr != nil {
			return rerr
		}
		body, _ := json.Marshal(map[string]string{"route": r, "backend": *to, "reason": *reason})
		var resp struct {
			Override struct{ Route, Backend string } `json:"override"`
		}
		raw, err = c.do(ctx, "POST", "/migrate/override", body, &resp)
		show = func() {
			fmt.Fprintf(out, "route %s: every request now goes to %s (until `meshgate migrate clear %s`)\n", resp.Override.Route, resp.Override.Backend, resp.Override.Route)
		}
	case "clear":
		r, rerr := needRoute()
		if rerr != nil {
			return rerr
		}
		raw, err = c.do(ctx, "DELETE", "/migrate/override?route="+url.QueryEscape(r), nil, nil)
		show = func() { fmt.Fprintf(out, "route %s: override cleared; the configured split applies\n", r) }
	default:
		fmt.Fprint(os.Stderr, migrateUsage)
		return fmt.Errorf("unknown migrate command %q", verb)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		_, err = out.Write(raw)
		return err
	}
	show()
	return nil
}

// migrateFlagVals are the values of migrate's flags.
type migrateFlagVals struct {
	admin, tokenFile, route, to, reason *string
	asJSON                              *bool
	n                                   *int
}

// migrateFlags is the flag set of `meshgate migrate VERB` (every verb
// takes every flag; migrateUsage documents each).
func migrateFlags(verb string) (*flag.FlagSet, migrateFlagVals) {
	fs := flag.NewFlagSet("migrate "+verb, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, migrateUsage) }
	def := os.Getenv("MESHGATE_ADMIN")
	if def == "" {
		def = "127.0.0.1:9901"
	}
	return fs, migrateFlagVals{
		admin:     fs.String("admin", def, "admin address"),
		tokenFile: fs.String("token-file", "", "bearer token file"),
		asJSON:    fs.Bool("json", false, "print JSON"),
		route:     fs.String("route", "", "diffs: only this route"),
		n:         fs.Int("n", 20, "diffs: at most N"),
		to:        fs.String("to", "", "rollback: the backend (default backends[0])"),
		reason:    fs.String("reason", "", "rollback: a note shown with the override"),
	}
}

func adminURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

func (c migrateClient) get(ctx context.Context, path string, v any) ([]byte, error) {
	return c.do(ctx, "GET", path, nil, v)
}

func (c migrateClient) do(ctx context.Context, method, path string, body []byte, v any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return raw, fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
		}
		return raw, fmt.Errorf("admin API: %s (is %s a MeshGate admin address?)", resp.Status, c.base)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return raw, fmt.Errorf("admin API: %w", err)
		}
	}
	return raw, nil
}

func fmtDur(sec float64) string {
	switch {
	case sec <= 0:
		return "-"
	case sec < 1e-3:
		return fmt.Sprintf("%.0fµs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	}
	return fmt.Sprintf("%.2fs", sec)
}

func printStatus(w io.Writer, st *migrate.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ROUTE\tSPLIT\tBACKEND\tSHARE\tRPS\tERRORS\tP99\tTOTAL\n")
	for _, r := range st.Routes {
		for i, b := range r.Backends {
			name, by := r.Route, r.By
			if by == "" {
				by = "-"
			}
			if r.Override != nil {
				by += " OVERRIDE→" + r.Override.Backend
			}
			if i > 0 {
				name, by = "", ""
			}
			share := "-"
			if b.Percent >= 0 {
				share = fmt.Sprintf("%.2f%%", b.Percent)
			}
			errs := "-"
			if b.Requests > 0 {
				errs = fmt.Sprintf("%.2f%%", b.ErrorRate*100)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%d\n", name, by, b.Upstream, share, b.RPS, errs, fmtDur(b.P99), b.Total)
		}
		if s := r.Shadow; s != nil {
			var mm []string
			for _, k := range []string{shadow.KindResult, shadow.KindBody, shadow.KindExt, shadow.KindError, shadow.KindTimeout} {
				if s.Mismatched[k] > 0 {
					mm = append(mm, fmt.Sprintf("%s=%d", k, s.Mismatched[k]))
				}
			}
			if len(mm) == 0 {
				mm = []string{"0"}
			}
			fmt.Fprintf(tw, "\t shadow→%s\t%d shadowed, %d matched, mismatched %s, %d dropped\t\t\t\t\t\n", s.Upstream, s.Requests, s.Matched, strings.Join(mm, " "), s.Dropped)
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "(rates over the last %.0fs)\n", st.WindowSeconds)
	for _, o := range st.Overrides {
		fmt.Fprintf(w, "override %s → %s since %s %s\n", o.Route, o.Backend, o.Since.Format(time.RFC3339), o.Reason)
	}
}

func printDiffs(w io.Writer, ds []shadow.Diff) {
	if len(ds) == 0 {
		fmt.Fprintln(w, "no shadow mismatches recorded")
		return
	}
	for _, d := range ds {
		fmt.Fprintf(w, "%s %s %s uin=%d", d.Time.Format(time.RFC3339Nano), d.Route, d.Kind, d.UIN)
		if d.Caller != "" {
			fmt.Fprintf(w, " caller=%s", d.Caller)
		}
		fmt.Fprintf(w, " shadow=%s\n", fmtDur(d.Latency))
		for _, s := range []struct {
			name string
			side shadow.Side
		}{{"primary", d.Primary}, {"shadow ", d.Shadow}} {
			fmt.Fprintf(w, "  %s result=%d %s body=%dB sha256:%s", s.name, s.side.Result, s.side.Code, s.side.BodyLen, s.side.BodySHA256)
			if s.side.Error != "" {
				fmt.Fprintf(w, " error=%q", s.side.Error)
			}
			if s.side.Message != "" {
				fmt.Fprintf(w, " message=%q", s.side.Message)
			}
			if s.side.Body != nil {
				fmt.Fprintf(w, " body=%q", s.side.Body)
			}
			fmt.Fprintln(w)
		}
	}
}
