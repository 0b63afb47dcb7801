package grpcmeter

import (
	"testing"

	"google.golang.org/grpc/codes"
)

// TestStatusName: the names grpc-go's metrics give codes (its internal
// canonicalString), including a code outside the enum.
func TestStatusName(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
		codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
		codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED", 17: "CODE(17)", 99: "CODE(99)",
	} {
		if got := StatusName(c); got != want {
			t.Errorf("StatusName(%d) = %q, want %q", c, got, want)
		}
	}
}
