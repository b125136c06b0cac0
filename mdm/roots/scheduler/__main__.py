"""`python -m mdm.roots.scheduler`: the scheduler command, as `hikeshi serve` starts its child."""

from mdm.roots.scheduler.cli import scheduler_command

if __name__ == "__main__":
    scheduler_command(prog_name="hikeshi scheduler")
