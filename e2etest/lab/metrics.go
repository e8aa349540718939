package lab

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SpeakerMetrics reads a node's speaker /metrics (served on that node's
// loopback, see speakerMetricsAddr): series (name with labels, as exposed)
// → value.
func (l *Lab) SpeakerMetrics(node string) (map[string]float64, error) {
	resp, err := l.HTTPClient(node, 5*time.Second).Get("http://" + speakerMetricsAddr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping the speaker of %s: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("scraping the speaker of %s: %s: %s", node, resp.Status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the metrics of %s: %w", node, err)
	}
	return out, nil
}
