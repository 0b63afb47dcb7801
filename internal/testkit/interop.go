package testkit

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// interopT is the test whose goroutine runs a grpc-go interop case
// (google.golang.org/grpc/interop's Do* functions) right now. The interop
// package reports a failed check with grpclog Fatal, which would end the
// whole test binary; interopLogger turns it into t.Fatal of that (sub)test
// instead.
var interopT atomic.Pointer[testing.T]

// interopLogger is grpclog's default logger (errors to stderr) except
// that a Fatal while interopT is set fails that test (t.Fatal runs
// runtime.Goexit, so grpclog never reaches its os.Exit).
type interopLogger struct{ grpclog.LoggerV2 }

func (l interopLogger) fatal(msg string) {
	if t := interopT.Load(); t != nil {
		t.Fatal(msg)
	}
	l.LoggerV2.Error(msg)
}

func (l interopLogger) Fatal(args ...any)                 { l.fatal(fmt.Sprint(args...)) }
func (l interopLogger) Fatalln(args ...any)               { l.fatal(fmt.Sprintln(args...)) }
func (l interopLogger) Fatalf(format string, args ...any) { l.fatal(fmt.Sprintf(format, args...)) }

// InstallInteropLogger makes grpclog's Fatal fail the running interop
// case (RunInteropCase) instead of exiting. Call it from the test
// package's init, before any test starts a gRPC goroutine: SetLoggerV2
// is not synchronised.
func InstallInteropLogger() {
	grpclog.SetLoggerV2(interopLogger{grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)})
}

// RunInteropCase runs one interop case as subtest name with a 10 s
// context; a failed check in the case fails that subtest. Cases must not
// run in parallel.
func RunInteropCase(t *testing.T, name string, fn func(t *testing.T, ctx context.Context)) {
	t.Run(name, func(t *testing.T) {
		if !interopT.CompareAndSwap(nil, t) {
			t.Fatal("interop cases must not run in parallel")
		}
		defer interopT.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fn(t, ctx)
	})
}

// InteropCase is one of grpc-go's interop client cases.
type InteropCase struct {
	Name string
	Run  func(ctx context.Context)
}

// InteropCases is grpc-go's interop client case list (unary and
// streaming, and large_unary with a gzip-compressed request) against tc, with the unimplemented cases on cc.
func InteropCases(tc testgrpc.TestServiceClient, cc *grpc.ClientConn) []InteropCase {
	return []InteropCase{
		{"empty_unary", func(ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) }},
		{"large_unary", func(ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) }},
		{"large_unary_gzip", func(ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc, grpc.UseCompressor(gzip.Name)) }},
		{"client_streaming", func(ctx context.Context) { interop.DoClientStreaming(ctx, tc) }},
		{"server_streaming", func(ctx context.Context) { interop.DoServerStreaming(ctx, tc) }},
		{"ping_pong", func(ctx context.Context) { interop.DoPingPong(ctx, tc) }},
		{"empty_stream", func(ctx context.Context) { interop.DoEmptyStream(ctx, tc) }},
		{"cancel_after_begin", func(ctx context.Context) { interop.DoCancelAfterBegin(ctx, tc) }},
		{"cancel_after_first_response", func(ctx context.Context) { interop.DoCancelAfterFirstResponse(ctx, tc) }},
		{"timeout_on_sleeping_server", func(ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc) }},
		{"custom_metadata", func(ctx context.Context) { interop.DoCustomMetadata(ctx, tc) }},
		{"status_code_and_message", func(ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc) }},
		{"special_status_message", func(ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) }},
		{"unimplemented_method", func(ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) }},
		{"unimplemented_service", func(ctx context.Context) {
			interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
		}},
	}
}
