package spatten

import chisel3._
import chisel3.util._

/** The handshake signals of one client's DRAM port on one channel, as the client sees
  * them (observation only). */
class DramClientProbe extends Bundle {
  val reqValid  = Bool()
  val reqReady  = Bool()
  val respValid = Bool()
  val respReady = Bool()
}

/** A test top (not part of the accelerator): two [[RowFetcher]]s sharing the DRAM
  * channels through one [[DramArbiter]], as the key and value fetchers of the
  * [[AttentionController]] do.
  *
  * Each fetcher has its own `rows` and `out` streams and `maxRows`; the arbiter's DRAM ports are the
  * top's `dram` ports. `probe(i)(c)` shows the handshake of client `i` on channel `c`
  * between the fetcher and the arbiter, so that a testbench can check that every response
  * goes to the client that asked (`pyverif/fetch/`).
  *
  * @param p the hardware parameters
  */
class FetchPair(p: SpAttenParams) extends Module {
  private val clients = 2
  val io = IO(new Bundle {
    val rows    = Vec(clients, Flipped(Decoupled(new FetchRows(p))))
    val out     = Vec(clients, Decoupled(new RowBeat(p)))
    val maxRows = Input(Vec(clients, UInt(log2Ceil(p.keysPerCycle + 1).W)))
    val dram   = Vec(p.numChannels, new DramReadPort(p))
    val idle   = Output(Vec(clients, Bool()))
    val status = Output(Vec(clients, new FetcherStatus(p)))
    val probe  = Output(Vec(clients, Vec(p.numChannels, new DramClientProbe)))
  })

  val fetchers = Seq.fill(clients)(Module(new RowFetcher(p)))
  val arbiter  = Module(new DramArbiter(p, clients))
  for ((f, i) <- fetchers.zipWithIndex) {
    f.io.rows <> io.rows(i)
    io.out(i) <> f.io.out
    f.io.maxRows := io.maxRows(i)
    arbiter.io.clients(i) <> f.io.dram
    io.idle(i) := f.io.idle
    io.status(i) := f.io.status
    for (c <- 0 until p.numChannels) {
      io.probe(i)(c).reqValid  := f.io.dram(c).req.valid
      io.probe(i)(c).reqReady  := arbiter.io.clients(i)(c).req.ready
      io.probe(i)(c).respValid := arbiter.io.clients(i)(c).resp.valid
      io.probe(i)(c).respReady := f.io.dram(c).resp.ready
    }
  }
  io.dram <> arbiter.io.dram
}
