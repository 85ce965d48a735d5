// Parses and lints the repository's Dockerfile with BuildKit's own parser and build-check rules,
// run by scripts/helm-test.sh (there is no container engine here to run `docker build --check`).
module ecomd.local/tests/helm/dockerfile_lint

go 1.22

require github.com/moby/buildkit v0.16.0

require (
	github.com/agext/levenshtein v1.2.3 // indirect
	github.com/containerd/typeurl/v2 v2.2.0 // indirect
	github.com/docker/go-units v0.5.0 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/moby/docker-image-spec v1.3.1 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/tonistiigi/go-csvvalue v0.0.0-20240710180619-ddb21b71c0b4 // indirect
	google.golang.org/protobuf v1.33.0 // indirect
)
