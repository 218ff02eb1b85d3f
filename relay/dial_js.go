//go:build js

package relay

import (
	"context"
	"net/http"

	"nhooyr.io/websocket"
)

// dialLink opens one browser WebSocket. Browsers allow no custom headers,
// so the token travels in the subprotocol offer (see subprotocols); writes
// go straight to WebSocket.send, which copies and never blocks.
func dialLink(ctx context.Context, url string, protos []string, o *DialOptions) (*link, *http.Response, error) {
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: protos})
	if err != nil {
		return nil, resp, err
	}
	return &link{ws: ws}, resp, nil
}
