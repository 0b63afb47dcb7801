package grpcwire

import (
	"testing"
	"time"
)

func TestTimeoutRoundTrip(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		wire string
	}{
		{0, "0n"}, {-time.Second, "0n"}, {1, "1n"}, {99999999, "99999999n"},
		{100000000, "100000u"}, {1500 * time.Millisecond, "1500000u"},
		{time.Hour, "3600000m"}, {100000 * time.Hour, "6000000M"}, {1<<63 - 1, "2562048H"},
	} {
		got := string(AppendTimeout(nil, c.d))
		if got != c.wire {
			t.Errorf("AppendTimeout(%v) = %q, want %q", c.d, got, c.wire)
			continue
		}
		back, err := ParseTimeout(got)
		if err != nil || back < c.d {
			t.Errorf("ParseTimeout(%q) = %v, %v; want at least %v", got, back, err, c.d)
		}
	}
	for _, bad := range []string{"", "1", "S", "123456789S", "10x", "-1S", "1.5S"} {
		if _, err := ParseTimeout(bad); err == nil {
			t.Errorf("ParseTimeout(%q) accepted", bad)
		}
	}
	if d, err := ParseTimeout("99999999H"); err != nil || d != 1<<63-1 {
		t.Errorf("ParseTimeout past the range = %v, %v; want the maximum", d, err)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, c := range []struct{ msg, wire string }{
		{"plain text", "plain text"},
		{"50% off", "50%25 off"},
		{"ü\n", "%C3%BC%0A"},
		{"\xff", "%EF%BF%BD"},
	} {
		if got := EncodeMessage(c.msg); got != c.wire {
			t.Errorf("EncodeMessage(%q) = %q, want %q", c.msg, got, c.wire)
		}
		if got := DecodeMessage(c.wire); got != c.msg && c.msg != "\xff" {
			t.Errorf("DecodeMessage(%q) = %q, want %q", c.wire, got, c.msg)
		}
	}
	if got := DecodeMessage("100%"); got != "100%" {
		t.Errorf("a bare %% must stay: %q", got)
	}
}

func TestValues(t *testing.T) {
	if got := EncodeValue("x-id-bin", "\x00\x01\xff"); got != "AAH/" {
		t.Errorf("EncodeValue = %q", got)
	}
	for _, wire := range []string{"AAH/", "AAE", "AAE="} {
		if _, err := DecodeValue("x-id-bin", wire); err != nil {
			t.Errorf("DecodeValue(%q): %v", wire, err)
		}
	}
	if v, err := DecodeValue("x-id-bin", "AAE="); err != nil || v != "\x00\x01" {
		t.Errorf("padded: %q %v", v, err)
	}
	if _, err := DecodeValue("x-id-bin", "!!"); err == nil {
		t.Error("bad base64 accepted")
	}
	if v, _ := DecodeValue("x-plain", "AAE="); v != "AAE=" {
		t.Error("a non-bin value must stay as it is")
	}
	if LowerKey("X-Mixed") != "x-mixed" || LowerKey("lower") != "lower" {
		t.Error("LowerKey")
	}
}

func TestValidContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"": false, "application/json": false, "application/grpcx": false, "application/grp": false, "text/plain": false,
	} {
		if got := ValidContentType(ct); got != want {
			t.Errorf("ValidContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}
