package codec

import "testing"

// want is the table of docs/protocol.md, written out independently.
var want = map[uint16]uint32{
	0: 0, 1: 12, 2: 3, 3: 16, 4: 7, 5: 4, 6: 8, 7: 14, 8: 5, 9: 13,
	10: 2, 11: 1, 12: 6, 13: 9, 14: 10, 15: 11, 16: 15,
}

func TestResultTableRoundTrip(t *testing.T) {
	// Every row: result -> gRPC -> result, and gRPC -> result -> gRPC.
	if len(want) != len(resultTable) {
		t.Fatalf("table has %d rows, test knows %d", len(resultTable), len(want))
	}
	for r := uint16(0); r < uint16(len(resultTable)); r++ {
		code, app := GRPCCode(r)
		if app || code != want[r] {
			t.Fatalf("GRPCCode(%d) = %d, %v; want %d", r, code, app, want[r])
		}
		back := ResultFor(code, 0)
		if back != r {
			t.Fatalf("ResultFor(%d) = %d, want %d", code, back, r)
		}
	}
}

func TestEveryGRPCCodeRoundTrips(t *testing.T) {
	for code := uint32(0); code < numGRPCCodes; code++ {
		r := ResultFor(code, 0)
		back, app := GRPCCode(r)
		if back != code || app {
			t.Errorf("gRPC %d -> result %d -> gRPC %d (app=%v)", code, r, back, app)
		}
	}
}

func TestApplicationResults(t *testing.T) {
	for _, r := range []uint16{17, 99, 100, 1234, 0x7fff, 0xffff} {
		code, app := GRPCCode(r)
		if code != grpcUnknown || !app || !IsAppResult(r) {
			t.Fatalf("GRPCCode(%d) = %d, %v; want UNKNOWN, app", r, code, app)
		}
		// x-mgp-result carries r back.
		if back := ResultFor(code, r); back != r {
			t.Fatalf("ResultFor(UNKNOWN, %d) = %d", r, back)
		}
	}
	// UNKNOWN without x-mgp-result is result 10, and 10 is not an app result.
	if got := ResultFor(grpcUnknown, 0); got != ResultUnknown {
		t.Fatalf("ResultFor(UNKNOWN) = %d, want 10", got)
	}
	if code, app := GRPCCode(ResultUnknown); code != grpcUnknown || app {
		t.Fatalf("GRPCCode(10) = %d, %v", code, app)
	}
	// A table result in x-mgp-result does not override UNKNOWN's mapping.
	if got := ResultFor(grpcUnknown, ResultNotFound); got != ResultUnknown {
		t.Fatalf("ResultFor(UNKNOWN, 8) = %d", got)
	}
	// An app result is ignored for codes other than UNKNOWN.
	if got := ResultFor(grpcNotFound, 500); got != ResultNotFound {
		t.Fatalf("ResultFor(NOT_FOUND, 500) = %d", got)
	}
}

func TestResultForInvalidCodes(t *testing.T) {
	for _, code := range []uint32{17, 99, 1 << 31} {
		if got := ResultFor(code, 0); got != ResultUnknown {
			t.Errorf("ResultFor(%d) = %d, want %d", code, got, ResultUnknown)
		}
	}
}

func TestTruncateUTF8(t *testing.T) {
	s := []byte("aé€😀") // 1 + 2 + 3 + 4 bytes
	for n, want := range map[int]string{
		-1: "", 0: "", 1: "a", 2: "a", 3: "aé", 4: "aé", 5: "aé", 6: "aé€",
		7: "aé€", 8: "aé€", 9: "aé€", 10: "aé€😀", 11: "aé€😀",
	} {
		if got := string(TruncateUTF8(s, n)); got != want {
			t.Errorf("TruncateUTF8(%d) = %q, want %q", n, got, want)
		}
	}
}
