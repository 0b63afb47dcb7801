package transcode_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/descset/descsettest"
	"github.com/meshgate/meshgate/meshgate/transcode"
)

func codecFor(t *testing.T) *transcode.Codec {
	t.Helper()
	set, err := descset.FromFileDescriptorSet(descsettest.FileDescriptorSet())
	if err != nil {
		t.Fatal(err)
	}
	c, err := transcode.New(set, &config.Body{Format: config.BodyJSON, RequestType: "legacy.EchoRequest", ResponseType: "legacy.EchoResponse"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := codecFor(t)
	pb, err := c.RequestToProto([]byte(`{"text":"a","count":3,"tags":["x"],"inner":{"flag":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	js, err := c.RequestToJSON(pb)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.ReplaceAll(string(js), " ", ""); s != `{"text":"a","count":"3","tags":["x"],"inner":{"flag":true}}` {
		t.Fatalf("round trip %s", js)
	}
	pb, err = c.ResponseToProto([]byte(`{"text":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	if js, err = c.ResponseToJSON(pb); err != nil || strings.ReplaceAll(string(js), " ", "") != `{"text":"b"}` {
		t.Fatalf("response %s %v", js, err)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	c := codecFor(t)
	for in, want := range map[string]string{
		`{"count":"x"}`:              "field count:",
		`{"tags":"x"}`:               "field tags:",
		`{"tags":["a",1]}`:           "field tags:",
		`{"zzz":1}`:                  "field zzz:",
		`{"inner":{"flag":"maybe"}}`: "field inner.flag:",
		`{"inner":{"nope":true}}`:    "field inner.nope:",
		`[`:                          "legacy.EchoRequest",
	} {
		_, err := c.RequestToProto([]byte(in))
		if !errors.Is(err, transcode.ErrBody) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", in, err)
		}
	}
	if _, err := c.ResponseToJSON([]byte{0xff}); !errors.Is(err, transcode.ErrBody) {
		t.Errorf("bad protobuf: %v", err)
	}
	set, _ := descset.FromFileDescriptorSet(descsettest.FileDescriptorSet())
	if _, err := transcode.New(set, &config.Body{Format: "json", RequestType: "legacy.Legacy", ResponseType: "legacy.EchoResponse"}); !errors.Is(err, transcode.ErrConfig) {
		t.Errorf("service as request type: %v", err)
	}
	if c, err := transcode.New(nil, &config.Body{Format: "proto"}); c != nil || err != nil {
		t.Errorf("proto format: %v %v", c, err)
	}
}
