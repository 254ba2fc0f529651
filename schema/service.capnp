# The example RPC service of `capnp-shm-rpc` (rpc/): the host/guest pattern of the
# reference design, served over a channel (shm://) or TCP (tcp://) alike.
# The file ID is fixed: generated code and other implementations depend on it.
@0xeba331d180499271;

interface Host {
  # What a host offers its guest.

  echo @0 (value :UInt64, payload :Data) -> (value :UInt64, payload :Data);
  # The fast call: answers at once with what it was given.

  later @1 (ticket :UInt64) -> (value :UInt64);
  # The long-running call: answered only once `resolve` is called with the same ticket,
  # while other calls (from the same caller too) go on meanwhile.

  resolve @2 (ticket :UInt64, value :UInt64) -> (waiting :Bool);
  # Answers the `later` call holding `ticket` with `value`; `waiting` says whether one
  # was waiting (otherwise the value is kept for the `later` call that comes).

  counter @3 (start :UInt64) -> (counter :Counter);
  # A capability handed back: a counter of the caller's own, starting at `start`. Calls
  # on it can be pipelined on this call's answer before it arrives.

  subscribe @4 (listener :Listener, count :UInt32) -> (subscription :Subscription);
  # A callback: the host calls `listener.event` `count` times (in order, each after the
  # previous one returned), and hands back a subscription to ask how far it got.
}

interface Counter {
  next @0 () -> (value :UInt64);
  # The next value (the first is the counter's start).
}

interface Listener {
  event @0 (seq :UInt64) -> ();
  # One event, numbered from 0.
}

interface Subscription {
  delivered @0 () -> (count :UInt32, done :Bool);
  # How many events the listener has acknowledged, and whether all were.
}
