package spatten

import chisel3._
import chisel3.util.Decoupled

/** The accelerator with its simulated DRAM: [[SpAttenCore]] plus one [[SimDramChannel]]
  * (the DPI-C [[SpAttenDram]] BlackBox) per channel. Only the command and response
  * streams (and the status outputs) are IO.
  *
  * This is the top of the DPI build that `run.py` (native harness) and the DPI variant of
  * the top-level regression use; the DRAM's backend, memory image and statistics are
  * chosen by plusargs (`hardware/dpi/README.md`).
  *
  * @param p the hardware parameters
  */
class SpAttenTop(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val cmd       = Flipped(Decoupled(new WordStream(p)))
    val resp      = Decoupled(new WordStream(p))
    val status    = Output(new CoreStatus(p))
    val cmdWords  = Output(UInt(16.W))
    val respWords = Output(UInt(32.W))
    val cycle     = Output(UInt(32.W))
  })

  val core = Module(new SpAttenCore(p))
  core.io.cmd <> io.cmd
  io.resp <> core.io.resp
  io.status := core.io.status
  io.cmdWords := core.io.cmdWords
  io.respWords := core.io.respWords
  io.cycle := core.io.cycle
  for (c <- 0 until p.numChannels) {
    val ch = Module(new SimDramChannel(p, c))
    ch.io <> core.io.dram(c)
  }
}
