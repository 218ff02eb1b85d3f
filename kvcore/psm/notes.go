package psm

import "sort"

// NoteKind says what a Note reports.
type NoteKind uint8

// Note kinds.
const (
	NoteJoined   NoteKind = iota + 1 // a new worker joined (Worker, Rank)
	NoteResumed                      // a worker resumed its session on a new connection
	NoteLeft                         // a worker left cleanly (a Leave)
	NoteRemoved                      // a worker was removed (Why: a silence timeout, its participant rejoined)
	NoteRun                          // a new run started (Run): an earlier run's keys need resume
	NoteDeadline                     // a round closed at its deadline without every worker (Key, Round, Pushed, Missing)
)

var noteNames = [...]string{"", "joined", "resumed", "left", "removed", "run", "deadline"}

func (k NoteKind) String() string {
	if int(k) < len(noteNames) {
		return noteNames[k]
	}
	return "note?"
}

// Note is something that happened in a Job that its server logs. Workers
// is the job's live membership after it.
type Note struct {
	Kind    NoteKind
	Worker  string
	Rank    int
	Workers int
	Why     string
	Run     uint64
	Key     string // deadline: the key's label
	Round   uint64
	Pushed  int   // deadline: pushes the round closed with
	Missing []int // deadline: ranks of the expected workers that did not push
}

func (j *Job) note(n Note) {
	n.Workers = len(j.workers)
	if n.Kind == NoteLeft || n.Kind == NoteRemoved {
		n.Workers-- // noted before the removal
	}
	j.rd.Notes = append(j.rd.Notes, n)
}

// noteDeadline notes a round of k closing at its deadline with arr.
func (j *Job) noteDeadline(k *key, arr []arrival) {
	var missing []int
	for rank := range k.cur.mem.w {
		if k.cur.missing(rank) {
			missing = append(missing, rank)
		}
	}
	sort.Ints(missing)
	j.note(Note{Kind: NoteDeadline, Key: k.label(), Round: k.rounds, Pushed: len(arr), Missing: missing})
}
