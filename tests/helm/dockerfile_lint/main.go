// Command dockerfile_lint parses a Dockerfile with BuildKit's parser, converts every instruction
// (which rejects malformed flags and arguments) and applies BuildKit's build checks, the same
// ones `docker build --check` runs. It also checks the shape ecomd's image relies on.
//
//	go run . ../../../Dockerfile
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile_lint DOCKERFILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var problems []string
	ast, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		fmt.Printf("dockerfile_lint: parse error: %v\n", err)
		os.Exit(1)
	}
	for _, w := range ast.Warnings {
		problems = append(problems, fmt.Sprintf("parser warning: %s", w.Short))
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, description, url, msg string, _ []parser.Range) {
			problems = append(problems, fmt.Sprintf("build check %s: %s", rule, msg))
		},
	})
	stages, metaArgs, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		fmt.Printf("dockerfile_lint: %v\n", err)
		os.Exit(1)
	}
	_ = metaArgs

	// The shape the chart and docs rely on.
	if len(stages) != 2 {
		problems = append(problems, fmt.Sprintf("expected 2 stages (build, runtime), found %d", len(stages)))
	} else {
		runtime := stages[len(stages)-1]
		if !strings.Contains(runtime.BaseName, "slim") {
			problems = append(problems, "runtime stage is not a slim image: "+runtime.BaseName)
		}
		seen := map[string]bool{}
		for _, cmd := range runtime.Commands {
			switch c := cmd.(type) {
			case *instructions.EntrypointCommand:
				seen["entrypoint"] = len(c.CmdLine) == 1 && c.CmdLine[0] == "ecomd" && !c.PrependShell
			case *instructions.UserCommand:
				seen["user"] = c.User != "" && !strings.HasPrefix(c.User, "root") && !strings.HasPrefix(c.User, "0")
			case *instructions.VolumeCommand:
				for _, v := range c.Volumes {
					seen["volume"] = seen["volume"] || v == "/var/lib/ecomd"
				}
			case *instructions.HealthCheckCommand:
				seen["healthcheck"] = c.Health != nil && strings.Contains(strings.Join(c.Health.Test, " "), "/healthz")
			}
		}
		for _, want := range []string{"entrypoint", "user", "volume", "healthcheck"} {
			if !seen[want] {
				problems = append(problems, "runtime stage lacks the expected "+strings.ToUpper(want)+
					` (ENTRYPOINT ["ecomd"], non-root USER, VOLUME /var/lib/ecomd, HEALTHCHECK on /healthz)`)
			}
		}
	}
	for _, p := range problems {
		fmt.Println("dockerfile_lint:", p)
	}
	fmt.Printf("dockerfile_lint: %d stages, %d problems\n", len(stages), len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}
