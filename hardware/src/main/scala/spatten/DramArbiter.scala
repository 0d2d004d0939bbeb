package spatten

import chisel3._
import chisel3.util._

/** Shares the DRAM channels among several read clients (the key fetcher, the value
  * fetcher and the K MSB fill), each of which sees a whole set of channel ports of its own.
  *
  * Per channel: a round-robin arbiter picks one client's request a cycle among the first
  * `numClients - background` clients; the last `background` clients (work fetched ahead)
  * get the channel, in their order, only in a cycle when none of those asks; a FIFO of client
  * numbers, one entry per request in flight, routes the channel's in-order responses back
  * to the client that asked. A request is passed on only while that FIFO has room
  * (`numClients * maxInflight` entries: every client keeps at most `maxInflight` requests in
  * flight on a channel, see [[RowFetcher]]). The responses are never back-pressured by
  * the arbiter itself; a client's `resp.ready` is passed through.
  *
  * No latency is added: requests and responses pass combinationally.
  *
  * @param p       the hardware parameters
  * @param numClients the number of clients, at least 1
  * @param background how many of them (the last ones) yield to the others
  */
class DramArbiter(p: SpAttenParams, numClients: Int, background: Int = 0) extends Module {
  require(numClients >= 1, s"numClients must be positive, got $numClients")
  require(background >= 0 && background < numClients, s"background must be in 0..${numClients - 1}, got $background")
  private val fore = numClients - background
  private val srcBits = log2Ceil(numClients).max(1)
  val io = IO(new Bundle {
    val clients = Vec(numClients, Flipped(Vec(p.numChannels, new DramReadPort(p))))
    val dram    = Vec(p.numChannels, new DramReadPort(p))
  })

  for (c <- 0 until p.numChannels) {
    val rr  = Module(new RRArbiter(UInt(p.dramAddrBits.W), fore))
    val arb = Module(new Arbiter(UInt(p.dramAddrBits.W), 1 + background))
    val src = Module(new Queue(UInt(srcBits.W), numClients * p.maxInflight))
    for (i <- 0 until fore) rr.io.in(i) <> io.clients(i)(c).req
    arb.io.in(0) <> rr.io.out
    for (i <- 0 until background) arb.io.in(1 + i) <> io.clients(fore + i)(c).req
    // a request leaves only when its source can be recorded
    io.dram(c).req.valid := arb.io.out.valid && src.io.enq.ready
    io.dram(c).req.bits := arb.io.out.bits
    arb.io.out.ready := io.dram(c).req.ready && src.io.enq.ready
    src.io.enq.valid := arb.io.out.valid && io.dram(c).req.ready
    src.io.enq.bits := Mux(arb.io.chosen === 0.U, rr.io.chosen.pad(srcBits), (arb.io.chosen +& (fore - 1).U).pad(srcBits)(srcBits - 1, 0))
    // responses, in order, to the client at the head of the FIFO
    val head = src.io.deq.bits
    for (i <- 0 until numClients) {
      io.clients(i)(c).resp.valid := io.dram(c).resp.valid && src.io.deq.valid && head === i.U
      io.clients(i)(c).resp.bits := io.dram(c).resp.bits
    }
    val sel = VecInit(io.clients.map(_(c).resp.ready))(head)
    io.dram(c).resp.ready := src.io.deq.valid && sel
    src.io.deq.ready := io.dram(c).resp.fire
    assert(!io.dram(c).resp.valid || src.io.deq.valid, "DramArbiter: a response with no request in flight")
  }
}
