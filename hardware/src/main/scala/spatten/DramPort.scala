package spatten

import chisel3._
import chisel3.util._

/** One DRAM channel's read port, as seen from the accelerator (SPEC.md section 6).
  *
  * `req` carries burst-aligned byte addresses that belong to this channel; every request
  * reads one whole burst of `burstBytes`. `resp` returns the bursts in request order,
  * byte 0 in bits [7:0].
  */
class DramReadPort(p: SpAttenParams) extends Bundle {
  val req  = Decoupled(UInt(p.dramAddrBits.W))
  val resp = Flipped(Decoupled(UInt(p.burstBits.W)))
}

/** The accelerator's command and response streams: 64-bit words with `last` marking
  * the end of a packet (SPEC.md section 5). */
class WordStream(p: SpAttenParams) extends Bundle {
  val data = UInt(p.wordBits.W)
  val last = Bool()
}
