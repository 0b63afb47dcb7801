package harness

import "testing"

func TestMetricSum(t *testing.T) {
	const text = `# HELP meshgate_requests_total Requests.
# TYPE meshgate_requests_total counter
meshgate_requests_total{code="OK",listener="grpc-in",route="a"} 150
meshgate_requests_total{code="OK",listener="grpc-in",route="b"} 50
meshgate_requests_total{code="Unavailable",listener="grpc-in",route="a"} 7
meshgate_requests_total{code="OK",listener="grpc-in-2",route="a"} 1000
meshgate_requests_total_extra{code="OK",listener="grpc-in"} 99
meshgate_up 1
meshgate_quoted{msg="a \"b\", c",x="y"} 2.5e+00
`
	for _, c := range []struct {
		name string
		want Labels
		sum  float64
	}{
		{"meshgate_requests_total", Labels{"listener": "grpc-in", "code": "OK"}, 200},
		{"meshgate_requests_total", Labels{"code": "OK"}, 1200},
		{"meshgate_requests_total", Labels{"listener": "nope"}, 0},
		{"meshgate_up", nil, 1},
		{"meshgate_quoted", Labels{"x": "y"}, 2.5},
		{"meshgate_absent", nil, 0},
	} {
		if got := MetricSum(text, c.name, c.want); got != c.sum {
			t.Errorf("MetricSum(%s, %v) = %v, want %v", c.name, c.want, got, c.sum)
		}
	}
}
