package store_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"google.golang.org/protobuf/proto"
)

// Example applies two entries of the default key-value state machine,
// then copies the store into another one through a snapshot.
func Example() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	a, err := store.Open(dir+"/a", store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	if err := a.SetTerm(1, store.TermOptions{KeySorting: store.KeySortingNatural}); err != nil {
		log.Fatal(err)
	}
	for i, ops := range [][]*kvpb.Operation{
		{{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: []byte("greeting"), Value: []byte("hello")}}}},
		{{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: []byte("name"), Value: []byte("world")}}}},
	} {
		value, err := proto.Marshal(&kvpb.WriteBatch{Operations: ops})
		if err != nil {
			log.Fatal(err)
		}
		if err := a.Apply(logpos.Entry{Term: 1, Offset: logpos.Offset(i), Value: value}); err != nil {
			log.Fatal(err)
		}
	}
	durable, err := a.Sync() // the log may now be trimmed up to durable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("durable commit:", durable)

	// Ship a snapshot of a into b.
	b, err := store.Open(dir+"/b", store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	sn, err := a.Snapshot()
	if err != nil {
		log.Fatal(err)
	}
	defer sn.Close()
	l, err := b.NewLoader()
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := sn.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if err := l.Write(c); err != nil {
			log.Fatal(err) // the loader is aborted already
		}
	}
	info, err := b.Install(l, 0)
	if err != nil {
		log.Fatal(err)
	}
	reset, pending := b.LogResetPending()
	fmt.Println("installed:", info.Commit, "term", info.Term, "log reset pending:", pending, reset)
	// The owner of the log clears it here, then:
	if err := b.ClearLogReset(); err != nil {
		log.Fatal(err)
	}
	_ = b.Scan(nil, nil, func(k, v []byte) bool {
		fmt.Printf("%s=%s\n", k, v)
		return true
	})
	// Output:
	// durable commit: {1,1}
	// installed: {1,1} term 1 log reset pending: true {1,1}
	// greeting=hello
	// name=world
}
