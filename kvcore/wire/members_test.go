package wire

import (
	"fmt"
	"testing"
)

func TestMembersRoundTrip(t *testing.T) {
	for _, ranks := range [][]int{{}, {0}, {0, 2, 5}, {1, 300, 70000}} {
		b := AppendMembers(nil, ranks)
		var m Msg
		if err := Decode(b, nil, &m); err != nil {
			t.Fatalf("%v: %v", ranks, err)
		}
		if !IsMembers(&m) {
			t.Fatalf("%v: not a membership notice: %+v", ranks, m.Header)
		}
		got, err := DecodeMembers(&m, nil)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(ranks) {
			t.Fatalf("%v: decoded %v, %v", ranks, got, err)
		}
	}
}

func TestMembersBad(t *testing.T) {
	for name, m := range map[string]Msg{
		"count beyond payload": {Header: Header{Type: TypeAck, Flags: FlagMembers, Count: 3}, Payload: []byte{0, 1}},
		"descending":           {Header: Header{Type: TypeAck, Flags: FlagMembers, Count: 2}, Payload: []byte{2, 1}},
		"duplicate":            {Header: Header{Type: TypeAck, Flags: FlagMembers, Count: 2}, Payload: []byte{1, 1}},
		"trailing bytes":       {Header: Header{Type: TypeAck, Flags: FlagMembers, Count: 1}, Payload: []byte{1, 2}},
		"truncated uvarint":    {Header: Header{Type: TypeAck, Flags: FlagMembers, Count: 1}, Payload: []byte{0x80}},
	} {
		if r, err := DecodeMembers(&m, nil); err == nil {
			t.Errorf("%s: decoded %v, want an error", name, r)
		}
	}
	ack := Msg{Header: Header{Type: TypeAck, Seq: 3, Flags: FlagMembers}}
	if IsMembers(&ack) {
		t.Error("an Ack with a seq is an answer, not a notice")
	}
}
