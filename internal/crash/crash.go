// Package crash ends the process abruptly at named steps, as a power cut
// would, when CTNET_CRASH_AT names the step. Fault-injection tests use it to
// prove that reconcile repairs a crash at every step.
package crash

import (
	"os"
	"syscall"
)

// Point is one step where a crash can be injected.
func Point(step string) {
	if os.Getenv("CTNET_CRASH_AT") == step {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
