//! Command-line interface: parses arguments and maps outcomes to exit
//! codes.

mod asg;
mod boot;
mod cloud;
mod console;
mod console_client;
mod daemon;
mod eip;
mod elb;
mod iam;
mod igw;
mod image;
mod instance;
mod key;
mod net;
mod output;
mod route_table;
mod sg;
mod ssh;
mod subnet;
mod supervise;
mod target_group;
mod template;
mod types;
mod vpc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gureum: a local EC2 for one Linux host.
#[derive(Debug, Parser)]
#[command(name = "gureum", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: cloud::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Boot(boot::BootArgs),
    /// Launch instances (detached); prints their IDs.
    Run(instance::RunArgs),
    #[command(subcommand, visible_alias = "instances")]
    Instance(instance::InstanceCommand),
    Ssh(ssh::SshArgs),
    Cp(ssh::CpArgs),
    #[command(subcommand, visible_alias = "keys")]
    Key(key::KeyCommand),
    #[command(subcommand, visible_alias = "images")]
    Image(image::ImageCommand),
    #[command(subcommand, visible_alias = "templates")]
    Template(template::TemplateCommand),
    #[command(subcommand, visible_alias = "vpcs")]
    Vpc(vpc::VpcCommand),
    #[command(subcommand, visible_alias = "subnets")]
    Subnet(subnet::SubnetCommand),
    #[command(subcommand, visible_alias = "route-tables")]
    RouteTable(route_table::RouteTableCommand),
    #[command(subcommand, visible_alias = "internet-gateway")]
    Igw(igw::IgwCommand),
    #[command(subcommand, visible_alias = "elastic-ip")]
    Eip(eip::EipCommand),
    #[command(subcommand, visible_alias = "security-group")]
    Sg(sg::SgCommand),
    /// Network load balancers and their listeners.
    #[command(subcommand, visible_alias = "load-balancer")]
    Elb(elb::ElbCommand),
    #[command(subcommand, visible_alias = "target-groups")]
    TargetGroup(target_group::TargetGroupCommand),
    /// Auto Scaling groups, kept at their size by the daemon.
    #[command(subcommand, visible_alias = "autoscaling")]
    Asg(asg::AsgCommand),
    /// Users, access keys and policies for the EC2/IAM/STS API.
    #[command(subcommand)]
    Iam(iam::IamCommand),
    #[command(subcommand)]
    Net(net::NetCommand),
    /// Instance types and their vCPUs and memory.
    #[command(visible_alias = "instance-types")]
    Types(types::TypesArgs),
    /// The control plane as a long-running process (see README "The daemon").
    Daemon(daemon::DaemonArgs),
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// `gureum boot` alone: the same arguments as under [`Cli`], without the
/// other commands. `boot` is how every VM's VMM starts, and building the
/// whole command tree first costs it more CPU than the rest of its setup
/// on a slow host (~0.1 s in the nested rig).
#[derive(Debug, Parser)]
#[command(name = "gureum")]
struct BootCli {
    #[command(flatten)]
    _global: cloud::GlobalArgs,
    #[command(subcommand)]
    command: BootCommand,
}

#[derive(Debug, Subcommand)]
enum BootCommand {
    Boot(boot::BootArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // Help, version and usage errors come from the full parser below, so
    // they read as they always do.
    if std::env::args_os().nth(1).is_some_and(|a| a == "boot")
        && let Ok(BootCli {
            command: BootCommand::Boot(args),
            ..
        }) = BootCli::try_parse()
    {
        return boot::run(&args);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Boot(args) => boot::run(&args),
        Command::Run(args) => cloud::run(&cli.global, |env| instance::launch(env, args)),
        Command::Instance(c) => cloud::run(&cli.global, |env| instance::run(env, c)),
        Command::Key(c) => cloud::run(&cli.global, |env| key::run(env, c)),
        Command::Image(c) => cloud::run(&cli.global, |env| image::run(env, c)),
        Command::Template(c) => cloud::run(&cli.global, |env| template::run(env, c)),
        Command::Vpc(c) => cloud::run(&cli.global, |env| vpc::run(env, c)),
        Command::Subnet(c) => cloud::run(&cli.global, |env| subnet::run(env, c)),
        Command::RouteTable(c) => cloud::run(&cli.global, |env| route_table::run(env, c)),
        Command::Igw(c) => cloud::run(&cli.global, |env| igw::run(env, c)),
        Command::Eip(c) => cloud::run(&cli.global, |env| eip::run(env, c)),
        Command::Sg(c) => cloud::run(&cli.global, |env| sg::run(env, c)),
        Command::Elb(c) => cloud::run(&cli.global, |env| elb::run(env, c)),
        Command::TargetGroup(c) => cloud::run(&cli.global, |env| target_group::run(env, c)),
        Command::Asg(c) => cloud::run(&cli.global, |env| asg::run(env, c)),
        Command::Iam(c) => cloud::run(&cli.global, |env| iam::run(env, c)),
        Command::Net(c) => cloud::run(&cli.global, |env| net::run(env, c)),
        Command::Types(args) => cloud::run(&cli.global, |env| types::run(env, &args)),
        Command::Daemon(args) => cloud::run(&cli.global, |env| daemon::run(env, &args)),
        Command::Supervise(args) => cloud::run(&cli.global, |env| supervise::run(env, &args)),
        Command::Ssh(args) => cloud::run_with_status(&cli.global, |env| ssh::ssh(env, args)),
        Command::Cp(args) => cloud::run_with_status(&cli.global, |env| ssh::cp(env, args)),
    }
}
