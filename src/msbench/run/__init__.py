"""Running a study: plan the trials (schedule), prepare and execute the study (study), one trial at a time
(trial: provision, phases, record, tear down), the phases themselves (phases, on the data of workload),
the stopping rule for trials until precise (stopping), the progress shown while it runs (progress), and
the harness's own cost (overhead)."""
