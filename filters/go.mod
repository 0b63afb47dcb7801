module github.com/meshgate/meshgate/filters

go 1.26.0

require (
	github.com/meshgate/meshgate v0.0.0
	github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745
)

require github.com/tetratelabs/wazero v1.7.2 // indirect

replace github.com/meshgate/meshgate => ../
