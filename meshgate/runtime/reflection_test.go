package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset/descsettest"
)

func reflectionConfig(legacyEP, protoset string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: grpc-in
    kind: grpc
    address: 127.0.0.1:0
    reflection: {descriptor_sets: [%q]}
    routes:
      - {method: /legacy.Legacy/*, cmd: 1, upstream: legacy}
      - {method: /other.Svc/X, cmd: 2, upstream: legacy}
  - name: plain
    kind: grpc
    address: 127.0.0.1:0
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
  - name: exact
    kind: grpc
    address: 127.0.0.1:0
    reflection: {descriptor_sets: [%q]}
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
`, protoset, protoset, legacyEP)
}

// reflectCall runs one reflection v1 request with grpc-go's generated client.
func reflectCall(t *testing.T, addr string, req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
	t.Helper()
	cc := testkit.Dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	return resp
}

func listServices(t *testing.T, addr string) []string {
	resp := reflectCall(t, addr, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

// TestReflectionFromDescriptorSets: a grpc listener with descriptor sets
// lists and describes its routed services over reflection v1; services the
// sets describe but no route serves, and routed services without a
// descriptor, are not listed; a listener without sets lists only what the
// server itself implements. grpcurl (when installed; required under CI)
// lists, describes and calls with no -proto.
func TestReflectionFromDescriptorSets(t *testing.T) {
	dir := t.TempDir()
	ps := descsettest.Write(t, dir)
	rt := start(t, mustParse(t, reflectionConfig(legacyServer(t), ps)))
	addr := rt.Addr("grpc-in").String()

	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "legacy.Legacy"}
	if got := listServices(t, addr); !slices.Equal(got, want) {
		t.Fatalf("list: %v, want %v", got, want)
	}
	if got := listServices(t, rt.Addr("plain").String()); !slices.Equal(got, want[:3]) {
		t.Fatalf("list without descriptor sets: %v, want %v", got, want[:3])
	}
	resp := reflectCall(t, addr, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "legacy.Legacy"}})
	fdps := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(fdps) == 0 {
		t.Fatalf("describe legacy.Legacy: %v", resp)
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(fdps[0], &fd); err != nil {
		t.Fatal(err)
	}
	if fd.GetName() != "legacy.proto" || fd.GetService()[0].GetMethod()[0].GetName() != "Echo" {
		t.Fatalf("descriptor: %v", &fd)
	}
	resp = reflectCall(t, addr, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "legacy.EchoRequest"}})
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("describe legacy.EchoRequest: %v", resp)
	}
	resp = reflectCall(t, addr, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "other.Svc"}})
	if resp.GetErrorResponse() == nil {
		t.Fatalf("other.Svc has no descriptor, yet: %v", resp)
	}

	// Only routed methods are described, and an unrouted service not at all.
	exact := rt.Addr("exact").String()
	resp = reflectCall(t, exact, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "legacy.Legacy"}})
	fd.Reset()
	if err := proto.Unmarshal(resp.GetFileDescriptorResponse().GetFileDescriptorProto()[0], &fd); err != nil {
		t.Fatal(err)
	}
	if len(fd.GetService()) != 1 || len(fd.GetService()[0].GetMethod()) != 1 || fd.GetService()[0].GetMethod()[0].GetName() != "Echo" || len(fd.GetMessageType()) != 3 {
		t.Fatalf("exact route: described %v", &fd)
	}
	for _, sym := range []string{"legacy.Unrouted", "legacy.Legacy.Uppercase"} {
		resp = reflectCall(t, exact, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym}})
		if resp.GetErrorResponse() == nil {
			t.Errorf("%s is not routed, yet described", sym)
		}
	}
	resp = reflectCall(t, addr, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "legacy.Unrouted"}})
	if resp.GetErrorResponse() == nil {
		t.Errorf("legacy.Unrouted is not routed, yet described")
	}

	grpcurl(t, addr)

	// A missing descriptor set rejects a reload, naming the field.
	bad := mustParse(t, reflectionConfig(legacyServer(t), ps))
	bad.Listeners[0].Reflection.DescriptorSets = []string{filepath.Join(dir, "missing.protoset")}
	bad.Listeners[2].Reflection = nil
	err := rt.Reload(bad)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "listeners[0].reflection.descriptor_sets[0]") {
		t.Fatalf("reload with a missing set: %v", err)
	}
	if got := listServices(t, addr); !slices.Equal(got, want) {
		t.Fatalf("after rejected reload: %v", got)
	}
}

// grpcurl runs the grpcurl binary against addr when it is installed (and
// requires it under CI=true).
func grpcurl(t *testing.T, addr string) {
	t.Helper()
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		if gp, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			p := filepath.Join(strings.TrimSpace(string(gp)), "bin", "grpcurl")
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("grpcurl not installed (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)")
		}
		t.Log("grpcurl not installed: skipping its part")
		return
	}
	run := func(args ...string) string {
		ctx := testkit.Context(t, 10*time.Second)
		out, err := exec.CommandContext(ctx, bin, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run(addr, "list"); !strings.Contains(out, "legacy.Legacy") || strings.Contains(out, "Unrouted") {
		t.Fatalf("grpcurl list: %s", out)
	}
	if out := run(addr, "describe", "legacy.Legacy"); !strings.Contains(out, "rpc Echo ( .legacy.EchoRequest ) returns ( .legacy.EchoResponse )") {
		t.Fatalf("grpcurl describe: %s", out)
	}
	// The legacy server echoes the body: EchoRequest{text} reads back as
	// EchoResponse{text}.
	if out := run("-d", `{"text":"via reflection"}`, addr, "legacy.Legacy/Echo"); !strings.Contains(out, `"text": "via reflection"`) {
		t.Fatalf("grpcurl call: %s", out)
	}
}
