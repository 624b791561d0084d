package contract_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

// ExampleServeProcess is a Go contract's side of the process line
// protocol: in a real contract program r is os.Stdin, and the program
// exits when ServeProcess returns.
func ExampleServeProcess() {
	fn := func(_ context.Context, txJSON string, env, _ map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: `{"seen":` + txJSON + `}`, OutputToChain: true, Logs: "stage " + env["STAGE"]}, nil
	}
	stdin := strings.NewReader(`{"id":1,"transaction_json":"{\"a\":1}","env_vars":{"STAGE":"test"}}` + "\n")
	if err := contract.ServeProcess(context.Background(), stdin, os.Stdout, fn); err != nil {
		panic(err)
	}
	// Output:
	// {"id":1,"result_json":"{\"seen\":{\"a\":1}}","output_to_chain":true,"logs":"stage test"}
}

// FuzzServeProcess feeds arbitrary bytes to a contract's side of the line
// protocol: it answers or fails, never panics, and writes only whole
// JSON lines, the hello at most once.
func FuzzServeProcess(f *testing.F) {
	f.Add([]byte(`{"id":1,"transaction_json":"{}","env_vars":{"A":"b"},"secrets":{"s":"t"}}` + "\n"))
	f.Add([]byte(`{"id":1,"transaction_json":"{}"}` + "\n\n" + `{"id":2,"transaction_json":"[1,2]"}`))
	f.Add([]byte("not json\n"))
	f.Add([]byte(`{"id":"x"}`))
	// Cancel lines, and requests from a host that sends them.
	f.Add([]byte(`{"id":1,"transaction_json":"{}","can_cancel":true}` + "\n" + `{"id":1,"cancel":true}` + "\n" + `{"id":9,"cancel":true}` + "\n"))
	f.Add([]byte(`{"id":1,"cancel":true}`))
	f.Add([]byte(`{"id":1,"transaction_json":"{}","can_cancel":true}` + "\n" + `{"id":2,"transaction_json":"{}","can_cancel":true}` + "\n"))
	f.Add([]byte(`{"id":1,"transaction_json":"{}","cancel":false}` + "\n" + `{"id":1,"cancel":"yes"}` + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		echo := func(_ context.Context, txJSON string, _, _ map[string]string) (contract.Output, error) {
			return contract.Output{ResultJSON: txJSON}, nil
		}
		_ = contract.ServeProcessWith(context.Background(), bytes.NewReader(in), &out, echo, contract.ServeProcessOptions{MaxConcurrent: 2})
		hellos := 0
		for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			if line != "" && !json.Valid([]byte(line)) {
				t.Fatalf("answer line %q is not JSON", line)
			}
			if strings.HasPrefix(line, `{"hello"`) {
				hellos++
			}
		}
		// The hello comes once, when the first request with can_cancel is
		// read; answers to requests read before it may precede it.
		if hellos > 1 {
			t.Fatalf("%d hellos:\n%s", hellos, out.String())
		}
	})
}
