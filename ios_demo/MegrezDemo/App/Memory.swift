import Darwin
import Foundation

/// The app's memory as iOS counts it against the jetsam limit: task_vm_info.phys_footprint.
enum Memory {
    static func physFootprintMB() -> Double {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let result = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard result == KERN_SUCCESS else { return 0 }
        return Double(info.phys_footprint) / 1_048_576
    }

    /// Highest footprint seen while an answer ran (sampled by the chat model).
    final class PeakSampler {
        private var timer: DispatchSourceTimer?
        private(set) var peakMB: Double = 0

        func start() {
            peakMB = Memory.physFootprintMB()
            let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
            t.schedule(deadline: .now(), repeating: .milliseconds(100))
            t.setEventHandler { [weak self] in
                guard let self = self else { return }
                self.peakMB = max(self.peakMB, Memory.physFootprintMB())
            }
            t.resume()
            timer = t
        }

        func stop() -> Double {
            timer?.cancel()
            timer = nil
            peakMB = max(peakMB, Memory.physFootprintMB())
            return peakMB
        }
    }
}
