// Command hello is the smallest Go program that prints: the benchmark times
// its exec-to-exit as the process-start floor of any Go binary on the machine.
package main

import "fmt"

func main() { fmt.Println("hello") }
