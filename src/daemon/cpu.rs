//! Each running instance's CPU utilization: a thread of the daemon that
//! reads its VMM's CPU time every minute (`/proc/PID/stat`, the process
//! with all its threads) and records the minute's average in the
//! instance's record through the executor (`cloud::cpu_metric`). The
//! first minute after a daemon starts, or after a VMM starts, only sets
//! the mark the next one counts from.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Executor;
use crate::cloud::api::Action;
use crate::cloud::cpu_metric::{self, CpuMinute};
use crate::cloud::instance::{Instance, State};
use crate::cloud::lifecycle::Context;
use crate::cloud::process::ProcessRef;

/// One sample a minute: the ring holds per-minute averages.
const EVERY: Duration = Duration::from_secs(60);

/// The last reading of one VMM.
#[derive(Debug, Clone, Copy)]
struct Mark {
    vmm: ProcessRef,
    cpu: Duration,
    at: Instant,
}

/// Samples for as long as the daemon runs, on a thread of its own.
pub fn start(ctx: Context, jobs: Executor) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cpu".into())
        .spawn(move || serve(&ctx, &jobs))
        .map(drop)
}

fn serve(ctx: &Context, jobs: &Executor) {
    let mut store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no CPU metrics: {e}");
            return;
        }
    };
    let mut marks: HashMap<String, Mark> = HashMap::new();
    loop {
        let running = store.read(|tx| {
            Ok::<_, crate::cloud::Error>(
                tx.list_readable::<Instance>()?
                    .items
                    .into_iter()
                    .filter(|i| i.state == State::Running)
                    .collect::<Vec<_>>(),
            )
        });
        match running {
            Ok(running) => {
                let samples = sample(&running, &mut marks);
                if !samples.is_empty() {
                    if let Err(e) = jobs.run(Action::RecordCpuUtilization { samples }) {
                        eprintln!("gureum daemon: cpu: cannot record the utilization: {e}");
                    }
                }
            }
            Err(e) => eprintln!("gureum daemon: cpu: cannot read the instances: {e}"),
        }
        std::thread::sleep(EVERY);
    }
}

/// The minute's average of each running instance whose VMM was read a
/// minute ago; the marks of the next minute.
fn sample(running: &[Instance], marks: &mut HashMap<String, Mark>) -> Vec<(String, CpuMinute)> {
    let now = Instant::now();
    let epoch = crate::cloud::time::now_secs();
    let mut samples = Vec::new();
    let mut next = HashMap::new();
    for instance in running {
        let Some(vmm) = instance.vmm else { continue };
        let Some(cpu) = vmm.cpu_time() else { continue };
        if let Some(mark) = marks.get(&instance.id).filter(|m| m.vmm == vmm) {
            let percent = cpu_metric::utilization(
                cpu.saturating_sub(mark.cpu),
                now.duration_since(mark.at),
                instance.vcpus,
            );
            samples.push((instance.id.clone(), CpuMinute { at: epoch, percent }));
        }
        next.insert(instance.id.clone(), Mark { vmm, cpu, at: now });
    }
    *marks = next;
    samples
}
