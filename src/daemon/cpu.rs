//! Each running instance's CPU utilization: a thread of the daemon that
//! reads its VMM's CPU time (`/proc/PID/stat`, the process with all its
//! threads) when it first sees it running and then every period (a
//! minute unless `gureum daemon --metrics-period` says otherwise, as
//! CloudWatch's detailed monitoring) from there, recording each period's
//! average in the instance's record through the executor
//! (`cloud::cpu_metric`). A daemon started again (or a VMM started
//! again) begins a new period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Executor;
use crate::cloud::api::Action;
use crate::cloud::cpu_metric::{self, CpuMinute};
use crate::cloud::instance::{Instance, State};
use crate::cloud::lifecycle::Context;
use crate::cloud::process::ProcessRef;

/// How often VMMs that started running are looked for.
const TICK: Duration = Duration::from_secs(5);

/// The last reading of one VMM.
#[derive(Debug, Clone, Copy)]
struct Mark {
    vmm: ProcessRef,
    cpu: Duration,
    at: Instant,
}

/// Samples for as long as the daemon runs, on a thread of its own.
pub fn start(ctx: Context, jobs: Executor, period: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cpu".into())
        .spawn(move || serve(&ctx, &jobs, period))
        .map(drop)
}

fn serve(ctx: &Context, jobs: &Executor, period: Duration) {
    let mut store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no CPU metrics: {e}");
            return;
        }
    };
    let mut marks: HashMap<String, Mark> = HashMap::new();
    let mut told = super::Told::default();
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
        let result = match running {
            Ok(running) => {
                let samples = sample(&running, &mut marks, period);
                if samples.is_empty() {
                    Ok(())
                } else {
                    jobs.run(Action::RecordCpuUtilization { samples })
                        .map(drop)
                        .map_err(|e| format!("cannot record it: {e}"))
                }
            }
            Err(e) => Err(format!("cannot read the instances: {e}")),
        };
        told.outcome("cpu: sampling", "the instances' utilization", result);
        std::thread::sleep(TICK);
    }
}

/// The period's average of each running instance whose VMM was read a
/// `period` ago or more (then read afresh); VMMs newly running are read.
fn sample(
    running: &[Instance],
    marks: &mut HashMap<String, Mark>,
    period: Duration,
) -> Vec<(String, CpuMinute)> {
    let now = Instant::now();
    let epoch = crate::cloud::time::now_secs();
    let mut samples = Vec::new();
    let mut next = HashMap::new();
    for instance in running {
        let Some(vmm) = instance.vmm else { continue };
        let Some(cpu) = vmm.cpu_time() else { continue };
        let mark = match marks.get(&instance.id).filter(|m| m.vmm == vmm) {
            Some(mark) if now.duration_since(mark.at) >= period => {
                let percent = cpu_metric::utilization(
                    cpu.saturating_sub(mark.cpu),
                    now.duration_since(mark.at),
                    instance.vcpus,
                );
                samples.push((instance.id.clone(), CpuMinute { at: epoch, percent }));
                Mark { vmm, cpu, at: now }
            }
            Some(mark) => *mark,
            None => Mark { vmm, cpu, at: now },
        };
        next.insert(instance.id.clone(), mark);
    }
    *marks = next;
    samples
}
