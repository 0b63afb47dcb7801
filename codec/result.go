package codec

// Result codes carried in response frames (shared/PROTOCOL.md).
const (
	ResultOK              uint16 = 0
	ResultUnknownCommand  uint16 = 1
	ResultBadRequest      uint16 = 2
	ResultUnauthenticated uint16 = 3
	ResultForbidden       uint16 = 4
	ResultTimeout         uint16 = 5
	ResultOverloaded      uint16 = 6
	ResultUnavailable     uint16 = 7
	ResultNotFound        uint16 = 8
	ResultInternal        uint16 = 9
)

// gRPC status code numbers, spelled out so this package stays stdlib-only
// (it is compiled to wasm for the Envoy filter). They equal
// google.golang.org/grpc/codes values.
const (
	grpcOK                = 0
	grpcUnknown           = 2
	grpcInvalidArgument   = 3
	grpcDeadlineExceeded  = 4
	grpcNotFound          = 5
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnimplemented     = 12
	grpcUnauthenticated   = 16
)

// resultTable is the one table for result ⇄ gRPC code; index = result.
var resultTable = [...]uint32{
	ResultOK:              grpcOK,
	ResultUnknownCommand:  grpcUnimplemented,
	ResultBadRequest:      grpcInvalidArgument,
	ResultUnauthenticated: grpcUnauthenticated,
	ResultForbidden:       grpcPermissionDenied,
	ResultTimeout:         grpcDeadlineExceeded,
	ResultOverloaded:      grpcResourceExhausted,
	ResultUnavailable:     grpcUnavailable,
	ResultNotFound:        grpcNotFound,
	ResultInternal:        grpcInternal,
}

// GRPCCode maps a result code to a gRPC status code number. Results outside
// the table are application errors: UNKNOWN, with app=true so the caller
// carries the numeric result in x-mgp-result.
func GRPCCode(result uint16) (code uint32, app bool) {
	if int(result) < len(resultTable) {
		return resultTable[result], false
	}
	return grpcUnknown, true
}

// ResultFor maps a gRPC status code number back to a result code. appResult
// is the x-mgp-result value when present (0 if absent); it wins for UNKNOWN so
// that application errors round-trip. gRPC codes without a row (CANCELED,
// ALREADY_EXISTS, ...) map to the closest result.
func ResultFor(code uint32, appResult uint16) uint16 {
	if code == grpcUnknown && appResult >= uint16(len(resultTable)) {
		return appResult
	}
	for r, c := range resultTable {
		if c == code {
			return uint16(r)
		}
	}
	switch code {
	case 1: // CANCELED
		return ResultUnavailable
	case 6: // ALREADY_EXISTS
		return ResultBadRequest
	case 9, 11: // FAILED_PRECONDITION, OUT_OF_RANGE
		return ResultBadRequest
	case 10: // ABORTED
		return ResultUnavailable
	case 15: // DATA_LOSS
		return ResultInternal
	}
	return ResultInternal
}
