package wire

import (
	"errors"
	"testing"
)

// TestHandshakeSecurityFields: the resume key (Hello and Welcome) and the
// advertised flow-control window (Welcome) round-trip, and both messages
// still decode without them (an older peer), with zero values.
func TestHandshakeSecurityFields(t *testing.T) {
	h := &Hello{Job: "j", Role: "worker", WorkerID: "j/1", Mode: ModeSync, Keys: []KeyDecl{{Key: 1, Shape: []int64{2}}}, ResumeKey: "k3y"}
	var m Msg
	if err := Decode(AppendHello(nil, h), nil, &m); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHello(m.Payload, nil)
	if err != nil || got.ResumeKey != "k3y" || got.WorkerID != "j/1" || len(got.Keys) != 1 {
		t.Fatalf("hello with a resume key: %+v, %v", got, err)
	}
	h.ResumeKey = ""
	if err := Decode(AppendHello(nil, h), nil, &m); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeHello(m.Payload, nil); err != nil || got.ResumeKey != "" {
		t.Fatalf("hello without a resume key: %+v, %v", got, err)
	}

	w := &Welcome{WorkerID: "j/1", Rank: 2, NumWorkers: 3, Heartbeat: 1000, Timeout: 10000, Mode: ModeSync, ResumeKey: "s3cret", Window: 512, WindowBytes: 64 << 20}
	if err := Decode(AppendWelcome(nil, w), nil, &m); err != nil {
		t.Fatal(err)
	}
	gw, err := DecodeWelcome(m.Payload, nil)
	if err != nil || *gw != *w {
		t.Fatalf("welcome: %+v, %v; want %+v", gw, err, w)
	}
	old := Welcome{WorkerID: "j/1", Rank: 2, NumWorkers: 3, Mode: ModeSync}
	if err := Decode(AppendWelcome(nil, &old), nil, &m); err != nil {
		t.Fatal(err)
	}
	if gw, err := DecodeWelcome(m.Payload, nil); err != nil || *gw != old {
		t.Fatalf("welcome of an older server: %+v, %v", gw, err)
	}
	// A resume key is a string like any other: over MaxString it is a
	// limit error, truncated it is a bad frame.
	lim := &Limits{MaxString: 4}
	h.ResumeKey = "toolong"
	h.Job, h.Role, h.WorkerID = "j", "", ""
	if err := Decode(AppendHello(nil, h), nil, &m); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeHello(m.Payload, lim); !errors.Is(err, &Error{Code: CodeLimit}) {
		t.Fatalf("long resume key: %v, want a limit error", err)
	}
	if _, err := DecodeWelcome(append(m.Payload[:0:0], AppendWelcome(nil, w)[HeaderSize:len(AppendWelcome(nil, w))-3]...), nil); !errors.Is(err, &Error{Code: CodeBadFrame}) {
		t.Fatalf("truncated welcome window: %v, want a bad frame", err)
	}
}
