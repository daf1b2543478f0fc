# The night on AWS: a Step Functions state machine (nightly.asl.json.tftpl),
# started by an EventBridge Scheduler schedule.

locals {
  # What the state machine's template is rendered with. scripts/infra_tests
  # renders the same template with these keys (through Terraform's own
  # templatefile) and runs it in moto's Step Functions against a fake Batch.
  state_machine_vars = {
    shards                = var.extract_shards
    job_queue             = aws_batch_job_queue.jobs.arn
    job_extract_tracked   = aws_batch_job_definition.stage["extract_tracked"].arn
    job_extract_neighbors = aws_batch_job_definition.stage["extract_neighbors"].arn
    job_fold              = aws_batch_job_definition.stage["fold"].arn
    score_shards          = var.score_shards
    job_score_users       = aws_batch_job_definition.stage["score_users"].arn
    job_score_photos      = aws_batch_job_definition.stage["score_photos"].arn
    job_score_finish      = aws_batch_job_definition.stage["score_finish"].arn
    job_publish           = aws_batch_job_definition.stage["publish"].arn
    job_gc                = aws_batch_job_definition.stage["gc"].arn
    alerts_topic          = aws_sns_topic.alerts.arn
  }
}

resource "aws_sfn_state_machine" "nightly" {
  name       = "${var.name}-nightly"
  role_arn   = aws_iam_role.state_machine.arn
  definition = templatefile("${path.module}/nightly.asl.json.tftpl", local.state_machine_vars)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.state_machine.arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }
}

# Start executions the schedule could not deliver land here.
resource "aws_sqs_queue" "schedule_dlq" {
  name                              = "${var.name}-schedule-dlq"
  message_retention_seconds         = 14 * 86400
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 3600
}

resource "aws_scheduler_schedule" "nightly" {
  name                         = "${var.name}-nightly"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  kms_key_arn                  = aws_kms_key.data.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.nightly.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({})

    retry_policy {
      maximum_retry_attempts       = 5
      maximum_event_age_in_seconds = 3600
    }

    dead_letter_config {
      arn = aws_sqs_queue.schedule_dlq.arn
    }
  }
}
