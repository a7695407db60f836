package zmqmsg

import "github.com/zmqmsg/zmqmsg/internal/config"

// Codec encodes arguments and replies. A Transport's codec must be the same
// on both ends of a call. Values of type []byte bypass the codec.
type Codec = config.Codec

// JSON is the default Codec, encoding/json.
type JSON = config.JSON
