package codec

import "testing"

func TestResultTableRoundTrip(t *testing.T) {
	// Every row: result -> gRPC -> result, and gRPC -> result -> gRPC.
	want := map[uint16]uint32{0: 0, 1: 12, 2: 3, 3: 16, 4: 7, 5: 4, 6: 8, 7: 14, 8: 5, 9: 13}
	for r := uint16(0); r < uint16(len(resultTable)); r++ {
		code, app := GRPCCode(r)
		if app || code != want[r] {
			t.Fatalf("GRPCCode(%d) = %d, %v; want %d", r, code, app, want[r])
		}
		back := ResultFor(code, 0)
		if back != r {
			t.Fatalf("ResultFor(%d) = %d, want %d", code, back, r)
		}
		if c2, _ := GRPCCode(back); c2 != code {
			t.Fatalf("gRPC %d -> result %d -> gRPC %d", code, back, c2)
		}
	}
	if len(want) != len(resultTable) {
		t.Fatalf("table has %d rows, test knows %d", len(resultTable), len(want))
	}
}

func TestApplicationResults(t *testing.T) {
	for _, r := range []uint16{10, 11, 100, 0x7fff, 0xffff} {
		code, app := GRPCCode(r)
		if code != grpcUnknown || !app {
			t.Fatalf("GRPCCode(%d) = %d, %v; want UNKNOWN, app", r, code, app)
		}
		// x-mgp-result carries r back.
		if back := ResultFor(code, r); back != r {
			t.Fatalf("ResultFor(UNKNOWN, %d) = %d", r, back)
		}
	}
	// A table result in x-mgp-result does not override UNKNOWN's mapping.
	if got := ResultFor(grpcUnknown, ResultNotFound); got != ResultInternal {
		t.Fatalf("ResultFor(UNKNOWN, 8) = %d", got)
	}
	// An app result is ignored for codes other than UNKNOWN.
	if got := ResultFor(grpcNotFound, 500); got != ResultNotFound {
		t.Fatalf("ResultFor(NOT_FOUND, 500) = %d", got)
	}
}

func TestResultForCodesWithoutRow(t *testing.T) {
	for code, want := range map[uint32]uint16{
		1: ResultUnavailable, 2: ResultInternal, 6: ResultBadRequest, 9: ResultBadRequest,
		10: ResultUnavailable, 11: ResultBadRequest, 15: ResultInternal, 17: ResultInternal, 99: ResultInternal,
	} {
		if got := ResultFor(code, 0); got != want {
			t.Errorf("ResultFor(%d) = %d, want %d", code, got, want)
		}
	}
}
