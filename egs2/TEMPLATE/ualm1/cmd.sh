# Which job backend runs the parallel work of the recipe. Every stage calls
#   ${cmd} [--gpu N] [--mem X] [--num_threads N] [--time T] JOB=1:N <logdir>/name.JOB.log <command with JOB>
# local: runs the N tasks on this machine, at most --max_jobs_run at a time.
# slurm: one `sbatch --array` per call; conf/slurm.conf maps the options onto sbatch flags.
cmd_backend=${UALM_CMD_BACKEND:-local}

if [ "${cmd_backend}" = local ]; then
  export data_cmd="utils/run_local.py"  # at most one task per CPU
  export train_cmd="utils/run_local.py"
  export decode_cmd="utils/run_local.py"  # at most one task per CPU
elif [ "${cmd_backend}" = slurm ]; then
  export data_cmd="utils/run_slurm.py --config conf/slurm.conf"
  export train_cmd="utils/run_slurm.py --config conf/slurm.conf"
  export decode_cmd="utils/run_slurm.py --config conf/slurm.conf"
else
  echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
  return 1 2>/dev/null || exit 1
fi
