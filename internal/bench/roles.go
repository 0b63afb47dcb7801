package bench

// Process roles as reported.
const (
	RoleBench    = "bench"    // this process: the load generator (and in-process servers)
	RoleMeshGate = "meshgate" // the MeshGate binary
	RoleServer   = "server"   // the backend server subprocess
	RoleEnvoyA   = "envoy-a"  // the first (client-side) Envoy
	RoleEnvoyB   = "envoy-b"  // the second (server-side) Envoy
	// RoleShadowServer is the backend a shadow route mirrors to (MPPs, MGGs).
	RoleShadowServer = "shadow-server"
)

// scenarioOrder is the display order (and chart colour index).
var scenarioOrder = []string{"S0", "S1", "S1w", "S2", "S3", "S3g", "S4", "S5", "S6", "S6g", "EL7", "HJ", "EJT", "MPP", "MGG", "MPPs", "MGGs"}
