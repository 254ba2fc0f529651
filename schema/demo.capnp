# The demo's messages: what `capnp-shm-demo` and the benches send through a channel.
# The file ID is fixed: generated code and other implementations depend on it.
@0xd5c4a8e6f1b23a97;

# One message of the demo's ping-pong and throughput runs.
struct Sample {
  seq @0 :UInt64;
  # Sequence number, counted by the sender from 0.

  sentNs @1 :UInt64;
  # Monotonic clock (CLOCK_MONOTONIC) at send time, in nanoseconds.

  payload @2 :Data;
  # Opaque payload bytes.

  control :union {
    # What this message asks of the peer.
    none @3 :Void;
    # Plain data, no request.
    ping @4 :Void;
    # Please answer with a `pong` carrying the same `seq` and `sentNs`.
    pong @5 :Void;
    # The answer to a `ping`.
    tune @6 :Tune;
    # Please change your poll interval.
  }
}

# A request to change the receiver's poll interval.
struct Tune {
  pollIntervalUs @0 :UInt32;
  # New poll interval in microseconds; 0 = busy spin.
}
