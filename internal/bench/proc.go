package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// ErrProc wraps /proc parse failures.
var ErrProc = errors.New("bench: cannot read /proc")

// ProcSample is one reading of a process's resource use.
type ProcSample struct {
	CPUSeconds float64 // utime + stime
	RSSBytes   int64   // VmRSS
	HWMBytes   int64   // VmHWM (peak RSS)
	// CtxSwitches is voluntary + nonvoluntary context switches summed
	// over the process's live threads (/proc/<pid>/task/*/status).
	CtxSwitches int64
}

// ReadProc reads CPU time and RSS of pid from /proc.
func ReadProc(pid int) (ProcSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("%w: %v", ErrProc, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return ProcSample{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("%w: %v", ErrProc, err)
	}
	rss, hwm := parseStatusRSS(status)
	return ProcSample{CPUSeconds: cpu, RSSBytes: rss, HWMBytes: hwm, CtxSwitches: readCtxSwitches(pid)}, nil
}

// readCtxSwitches sums voluntary and nonvoluntary context switches over
// every thread of pid. /proc/<pid>/status alone counts only the main
// thread, and a Go or Envoy process switches mostly on its other threads.
// A thread that exits between two readings takes its count with it; the
// Go runtime and Envoy keep their threads, so the delta over a window is
// reliable for them.
func readCtxSwitches(pid int) int64 {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		n += parseCtxSwitches(b)
	}
	return n
}

// parseCtxSwitches returns voluntary_ctxt_switches +
// nonvoluntary_ctxt_switches from a status file.
func parseCtxSwitches(status []byte) int64 {
	var n int64
	for _, line := range bytes.Split(status, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		if string(k) != "voluntary_ctxt_switches" && string(k) != "nonvoluntary_ctxt_switches" {
			continue
		}
		if x, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64); err == nil {
			n += x
		}
	}
	return n
}

// parseStatCPU returns (utime+stime)/USER_HZ from a /proc/<pid>/stat line.
// The command name (field 2) may contain spaces and parentheses, so fields
// are counted from the last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	// utime is field 14, stime field 15.
	f, err := statFields(stat, 15)
	if err != nil {
		return 0, err
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: stat: %v", ErrProc, err)
	}
	return float64(ut+st) / clockTicks, nil
}

// statFields returns the fields of a /proc/<pid>/stat line after the
// command name (which may hold spaces and parentheses): f[0] is field 3,
// field n is f[n-3]. It fails when field n is missing.
func statFields(stat []byte, n int) ([]string, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("%w: stat: no ')'", ErrProc)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < n-2 {
		return nil, fmt.Errorf("%w: stat: %d fields", ErrProc, len(f))
	}
	return f, nil
}

// procAge returns how long ago process pid started (/proc/<pid>/stat
// field 22 against /proc/uptime).
func procAge(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrProc, err)
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrProc, err)
	}
	return parseAge(stat, up)
}

func parseAge(stat, uptime []byte) (time.Duration, error) {
	// starttime (clock ticks after boot) is field 22.
	f, err := statFields(stat, 22)
	if err != nil {
		return 0, err
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: stat: %v", ErrProc, err)
	}
	u := strings.Fields(string(uptime))
	if len(u) < 1 {
		return 0, fmt.Errorf("%w: uptime: empty", ErrProc)
	}
	secs, err := strconv.ParseFloat(u[0], 64)
	if err != nil {
		return 0, fmt.Errorf("%w: uptime: %v", ErrProc, err)
	}
	return time.Duration((secs - float64(start)/clockTicks) * float64(time.Second)), nil
}

// parseStatusRSS returns VmRSS and VmHWM in bytes from /proc/<pid>/status.
func parseStatusRSS(status []byte) (rss, hwm int64) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				*dst = kb * 1024
			}
		}
	}
	return rss, hwm
}

// Proc is one process taking part in a scenario.
type Proc struct {
	Role string // "bench", "meshgate", "envoy-a", "server", ...
	PID  int
	// Note says what the process hosts when not obvious (e.g. "client +
	// in-process servers").
	Note string
}

// ProcUsage is a process's resource use over one measurement.
type ProcUsage struct {
	Role       string  `json:"role"`
	PID        int     `json:"pid"`
	Note       string  `json:"note,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPer1k   float64 `json:"cpu_s_per_1k"`
	RSSBytes   int64   `json:"rss_bytes"`
	// CtxSwitches is the context switches (all threads, voluntary +
	// nonvoluntary) over the window; CtxPerReq divides by the completed
	// requests.
	CtxSwitches int64   `json:"ctx_switches"`
	CtxPerReq   float64 `json:"ctx_switches_per_request"`
}

// readBusy returns the machine's busy CPU seconds (all CPUs: user, nice,
// system, irq, softirq, steal) from the first line of /proc/stat.
func readBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrProc, err)
	}
	return parseBusy(b)
}

func parseBusy(stat []byte) (float64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("%w: /proc/stat: unexpected %q", ErrProc, line)
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: /proc/stat: %v", ErrProc, err)
		}
		busy += v
	}
	return float64(busy) / clockTicks, nil
}

// procWindow measures CPU between start and stop.
type procWindow struct {
	procs []Proc
	start []ProcSample
	busy  float64
	at    time.Time
}

func startWindow(procs []Proc) *procWindow {
	w := &procWindow{procs: procs, start: make([]ProcSample, len(procs)), at: time.Now()}
	w.busy, _ = readBusy()
	for i, p := range procs {
		w.start[i], _ = ReadProc(p.PID)
	}
	return w
}

// stop returns each process's use and the background load: the CPU (in
// cores) the rest of the machine used during the window.
func (w *procWindow) stop(requests int64) ([]ProcUsage, float64) {
	out := make([]ProcUsage, len(w.procs))
	var ours float64
	for i, p := range w.procs {
		end, _ := ReadProc(p.PID)
		cpu := end.CPUSeconds - w.start[i].CPUSeconds
		ours += cpu
		cs := end.CtxSwitches - w.start[i].CtxSwitches
		out[i] = ProcUsage{Role: p.Role, PID: p.PID, Note: p.Note, CPUSeconds: cpu, CPUPer1k: CPUPer1k(cpu, requests), RSSBytes: end.RSSBytes,
			CtxSwitches: cs, CtxPerReq: perRequest(cs, requests)}
	}
	busy, _ := readBusy()
	el := time.Since(w.at).Seconds()
	bg := 0.0
	if el > 0 && w.busy > 0 {
		bg = max(0, (busy-w.busy-ours)/el)
	}
	return out, bg
}

// perRequest is n/requests (0 without requests).
func perRequest(n, requests int64) float64 {
	if requests <= 0 {
		return 0
	}
	return float64(n) / float64(requests)
}
