package codec

// Result codes carried in response frames (docs/protocol.md, "Result codes
// ↔ gRPC status"). Results 0–16 each have one gRPC code; 17–99 are
// reserved and 100–65535 are application errors, both carried over gRPC as
// UNKNOWN with the number in the x-mgp-result trailer.
const (
	ResultOK                 uint16 = 0
	ResultUnknownCommand     uint16 = 1
	ResultBadRequest         uint16 = 2
	ResultUnauthenticated    uint16 = 3
	ResultForbidden          uint16 = 4
	ResultTimeout            uint16 = 5
	ResultOverloaded         uint16 = 6
	ResultUnavailable        uint16 = 7
	ResultNotFound           uint16 = 8
	ResultInternal           uint16 = 9
	ResultUnknown            uint16 = 10
	ResultCancelled          uint16 = 11
	ResultAlreadyExists      uint16 = 12
	ResultFailedPrecondition uint16 = 13
	ResultAborted            uint16 = 14
	ResultOutOfRange         uint16 = 15
	ResultDataLoss           uint16 = 16

	// ResultAppMin is the first application-defined result.
	ResultAppMin uint16 = 100
)

// gRPC status code numbers, spelled out so this package stays stdlib-only
// (it is compiled to wasm for the Envoy filter). They equal
// google.golang.org/grpc/codes values.
const (
	grpcOK                 = 0
	grpcCanceled           = 1
	grpcUnknown            = 2
	grpcInvalidArgument    = 3
	grpcDeadlineExceeded   = 4
	grpcNotFound           = 5
	grpcAlreadyExists      = 6
	grpcPermissionDenied   = 7
	grpcResourceExhausted  = 8
	grpcFailedPrecondition = 9
	grpcAborted            = 10
	grpcOutOfRange         = 11
	grpcUnimplemented      = 12
	grpcInternal           = 13
	grpcUnavailable        = 14
	grpcDataLoss           = 15
	grpcUnauthenticated    = 16

	numGRPCCodes = 17
)

// resultTable is the one table for result ⇄ gRPC code; index = result.
// Every gRPC code appears exactly once, so the mapping is a bijection on
// results 0–16.
var resultTable = [...]uint32{
	ResultOK:                 grpcOK,
	ResultUnknownCommand:     grpcUnimplemented,
	ResultBadRequest:         grpcInvalidArgument,
	ResultUnauthenticated:    grpcUnauthenticated,
	ResultForbidden:          grpcPermissionDenied,
	ResultTimeout:            grpcDeadlineExceeded,
	ResultOverloaded:         grpcResourceExhausted,
	ResultUnavailable:        grpcUnavailable,
	ResultNotFound:           grpcNotFound,
	ResultInternal:           grpcInternal,
	ResultUnknown:            grpcUnknown,
	ResultCancelled:          grpcCanceled,
	ResultAlreadyExists:      grpcAlreadyExists,
	ResultFailedPrecondition: grpcFailedPrecondition,
	ResultAborted:            grpcAborted,
	ResultOutOfRange:         grpcOutOfRange,
	ResultDataLoss:           grpcDataLoss,
}

// codeTable is resultTable inverted; index = gRPC code.
var codeTable = func() (t [numGRPCCodes]uint16) {
	for r, c := range resultTable {
		t[c] = uint16(r)
	}
	return t
}()

// GRPCCode maps a result code to a gRPC status code number. Results past
// the table (17–99 reserved, ≥ 100 application) map to UNKNOWN with
// app=true: the caller carries the numeric result in x-mgp-result.
// Result 10 is UNKNOWN with app=false (no x-mgp-result).
func GRPCCode(result uint16) (code uint32, app bool) {
	if int(result) < len(resultTable) {
		return resultTable[result], false
	}
	return grpcUnknown, true
}

// ResultFor maps a gRPC status code number back to a result code.
// appResult is the x-mgp-result value (0 if absent); it is used only with
// UNKNOWN and only when it is past the table (≥ 17), so UNKNOWN without it
// is result 10 and every application result round-trips. A code outside
// 0–16 (not a gRPC code) is result 10, unknown error.
func ResultFor(code uint32, appResult uint16) uint16 {
	if code == grpcUnknown && int(appResult) >= len(resultTable) {
		return appResult
	}
	if code < numGRPCCodes {
		return codeTable[code]
	}
	return ResultUnknown
}

// IsAppResult reports whether result travels over gRPC as UNKNOWN plus
// x-mgp-result (results 17–65535).
func IsAppResult(result uint16) bool { return int(result) >= len(resultTable) }
