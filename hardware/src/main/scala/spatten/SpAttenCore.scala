package spatten

import chisel3._
import chisel3.util._

/** The whole accelerator with its DRAM read ports as IO (SPEC.md sections 5 and 6).
  *
  * Command words enter the [[RequestIntake]], which parses the next command while the
  * [[AttentionController]] runs the current one; the controller's words and ids leave
  * through the [[ResponseWriter]]. A free-running 32-bit cycle counter gives every
  * request its start cycle and the response its cycle field.
  *
  * This is the top for testbenches that model the DRAM themselves (a Python memory
  * agent on `dram`); [[SpAttenTop]] attaches the DPI DRAM instead.
  *
  * @param p the hardware parameters
  */
class SpAttenCore(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val cmd    = Flipped(Decoupled(new WordStream(p)))
    val resp   = Decoupled(new WordStream(p))
    val dram   = Vec(p.numChannels, new DramReadPort(p))
    val status = Output(new CoreStatus(p))
    /** Words taken on `cmd` in the current packet, and response words sent (wraps). */
    val cmdWords  = Output(UInt(16.W))
    val respWords = Output(UInt(32.W))
    /** The free-running cycle counter. */
    val cycle  = Output(UInt(32.W))
  })

  val cycle = RegInit(0.U(32.W))
  cycle := cycle + 1.U
  io.cycle := cycle

  val intake = Module(new RequestIntake(p))
  val ctrl   = Module(new AttentionController(p))
  val writer = Module(new ResponseWriter(p))

  intake.io.cmd <> io.cmd
  intake.io.cycle := cycle
  ctrl.io.req <> intake.io.out
  ctrl.io.cycle := cycle
  ctrl.io.dram <> io.dram
  writer.io.words <> ctrl.io.words
  writer.io.ids <> ctrl.io.ids
  writer.io.selIds := ctrl.io.selIds
  io.resp <> writer.io.out

  io.status := ctrl.io.status
  io.cmdWords := intake.io.wordCount
  io.respWords := writer.io.sent
}
