package worker_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestProcessWorkers runs process-mode workers end to end: Prime
// simulator → gateway → two workers, each with its own contract process.
func TestProcessWorkers(t *testing.T) {
	const n = 200
	pools := []*worker.ProcessPool{
		startPool(t, "serve", worker.ProcessConfig{InFlight: 4}),
		startPool(t, "serve", worker.ProcessConfig{InFlight: 4}),
	}
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{
		Workers: 2, Capacity: 4, Prime: testcluster.PrimeConfig(prime),
		ContractFor: func(i int) contract.Func { return pools[i].Contract },
	})
	ids := testcluster.Submit(t, prime, n)
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	pids := map[int]bool{}
	for i, id := range ids {
		resp, _ := prime.Answer(testcluster.ContractID, id)
		var r childResult
		if err := json.Unmarshal([]byte(resp.GetResultJson()), &r); err != nil || resp.GetError() != "" || r.Seq != i || r.Stage != "test" || r.Secret == "" {
			t.Fatalf("transaction %d answered %v", i, resp)
		}
		pids[r.Pid] = true
	}
	if len(pids) != 2 {
		t.Fatalf("pids %v", pids)
	}
}

// TestProcessWorkerKill9 runs a process-mode worker end to end and kills
// its process with kill -9 while it holds a transaction: that one is
// answered with the error (as a command killed in mode exec is), the
// process is restarted, and every transaction is answered exactly once.
func TestProcessWorkerKill9(t *testing.T) {
	const n, held = 20, 5
	logs := new(testutil.LogBuffer)
	pool := startPool(t, "serve", worker.ProcessConfig{
		InFlight: 4, RestartDelay: 20 * time.Millisecond, StopGrace: 100 * time.Millisecond,
		Env: []string{"CHILD_HOLD_SEQ=" + strconv.Itoa(held)}, Logger: logs.Logger(),
	})
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Capacity: 4, Prime: testcluster.PrimeConfig(prime), Contract: pool.Contract})
	ids := testcluster.Submit(t, prime, n)
	testcluster.WaitAnswered(t, prime, n-1, c) // all but the held one
	re := regexp.MustCompile(`holding 5 pid (\d+)`)
	var m []string
	testutil.WaitUntil(t, "the held transaction", func() bool { m = re.FindStringSubmatch(logs.String()); return m != nil })
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	for i, id := range ids {
		resp, _ := prime.Answer(testcluster.ContractID, id)
		switch {
		case i == held && !(strings.Contains(resp.GetError(), "contract process exited") && strings.Contains(resp.GetError(), "signal: killed")):
			t.Fatalf("killed transaction answered %v", resp)
		case i != held && resp.GetError() != "":
			t.Fatalf("transaction %d answered %v", i, resp)
		}
	}
	testutil.WaitUntil(t, "the restart", func() bool { return pool.Stats().Starts == 2 && pool.Stats().Running == 1 })
}

// TestExampleContract builds the documented standalone example contract
// (gateway/contract/internal/examplecontract, standard library only) and runs transactions
// through it.
func TestExampleContract(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := t.TempDir() + "/contract"
	if out, err := exec.Command(goTool, "build", "-o", bin, "../contract/internal/examplecontract").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p, err := worker.StartProcesses(worker.ProcessConfig{Command: []string{bin}, InFlight: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := fmt.Sprintf(`{"header":{"txn_id":"t%d"},"payload":{"seq":%d}}`, i, i)
			out, err := p.Contract(testutil.Context(t), tx, map[string]string{"DRAGONCHAIN_ID": "c1"}, nil)
			if err != nil || !strings.Contains(out.ResultJSON, fmt.Sprintf(`"txn_id":"t%d"`, i)) || !strings.Contains(out.Logs, "on chain c1") {
				t.Errorf("transaction %d: %+v, %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	if _, err := p.Contract(testutil.Context(t), "not json", nil, nil); err == nil || !strings.Contains(err.Error(), "bad transaction") {
		t.Fatalf("err %v", err)
	}
}
