package gateway_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
)

// Example runs a Prime simulator, a gateway node and one worker node on
// loopback and pushes ten transactions through them.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	prime, _ := primesim.New(primesim.Config{APIKey: "key", Contracts: []string{"sc"}})
	_ = prime.Start("127.0.0.1:0")
	defer prime.Close()

	// Two grid nodes, each on its own listener: the gateway and a worker.
	gwLn, _ := net.Listen("tcp", "127.0.0.1:0")
	wkLn, _ := net.Listen("tcp", "127.0.0.1:0")
	hosts := []string{"http://" + gwLn.Addr().String(), "http://" + wkLn.Addr().String()}
	secret := []byte("shared grid secret")

	// The worker's handlers are registered before its node starts.
	wkNode, _, _ := worker.Start(ctx, wkLn, grid.Options{Local: hosts[1], Hosts: hosts, Secret: secret}, worker.Options{
		Capacity: 4,
		Contract: func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
			return contract.Output{ResultJSON: `{"ok":true}`, OutputToChain: true}, nil
		},
	})
	defer wkNode.Close()

	node, _ := grid.StartNode(ctx, gwLn, grid.Options{Local: hosts[0], Hosts: hosts, Secret: secret})
	defer node.Close()
	disp := gateway.NewDispatcher(node.Manager, gateway.DispatcherOptions{})
	defer disp.Close()
	dir, _ := os.MkdirTemp("", "gateway-example")
	defer os.RemoveAll(dir)
	journal, _ := gateway.OpenJournal(filepath.Join(dir, "journal.db"), gateway.JournalOptions{})
	defer journal.Close()

	gw, err := gateway.New(gateway.Options{
		Prime: gateway.PrimeConfig{
			ServerAddress: prime.Addr().String(), ChainID: primesim.DefaultChainID, SmartContractID: "sc", APIKey: "key",
			ReconnectDelay: 100 * time.Millisecond,
		},
		Runner:  disp,
		Journal: journal,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Run(runCtx) }()

	_ = prime.Generate(ctx, "sc", 10, 0)
	_ = prime.WaitAnswered(ctx, 10)
	stop() // as on SIGINT: drain and return
	<-done

	r := prime.Report()
	fmt.Println("answered:", r.Answered, "exactly once:", r.OK())
	// Output: answered: 10 exactly once: true
}
