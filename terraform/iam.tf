# Least-privilege roles: each reads and writes only what its stage needs.

locals {
  bucket_arn  = aws_s3_bucket.data.arn
  prefix_arn  = "${aws_s3_bucket.data.arn}/${var.storage_prefix}/*"
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  events_rule = "arn:${data.aws_partition.current.partition}:events:${var.region}:${data.aws_caller_identity.current.account_id}:rule/StepFunctionsGetEventsForBatchJobsRule"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# --- Batch jobs ---

# Starting a job: pull the image, write its logs, read the API key.
resource "aws_iam_role" "job_execution" {
  name               = "${var.name}-job-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "job_execution" {
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.faverecs.arn]
  }
  statement {
    sid       = "EcrToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken has no resource-level permissions.
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.jobs.arn}:*"]
  }
  statement {
    sid       = "ApiKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.flickr_api_key.arn]
  }
  statement {
    sid       = "DecryptKeyAndLogs"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "job_execution" {
  role   = aws_iam_role.job_execution.id
  policy = data.aws_iam_policy_document.job_execution.json
}

# Running a job: read and write the storage prefix (and list it).
resource "aws_iam_role" "job" {
  name               = "${var.name}-job"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "job" {
  statement {
    sid       = "Objects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [local.prefix_arn]
  }
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.storage_prefix}/*", var.storage_prefix]
    }
  }
  statement {
    sid       = "Encryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "job" {
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

# --- serve ---

resource "aws_iam_role" "serve_execution" {
  name               = "${var.name}-serve-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "serve_execution" {
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.faverecs.arn]
  }
  statement {
    sid       = "EcrToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken has no resource-level permissions.
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.serve.arn}:*"]
  }
  statement {
    sid       = "DecryptImage"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "serve_execution" {
  role   = aws_iam_role.serve_execution.id
  policy = data.aws_iam_policy_document.serve_execution.json
}

# serve only reads.
resource "aws_iam_role" "serve" {
  name               = "${var.name}-serve"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "serve" {
  statement {
    sid       = "Read"
    actions   = ["s3:GetObject"]
    resources = [local.prefix_arn]
  }
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.storage_prefix}/*", var.storage_prefix]
    }
  }
  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "serve" {
  role   = aws_iam_role.serve.id
  policy = data.aws_iam_policy_document.serve.json
}

# --- the state machine ---

resource "aws_iam_role" "state_machine" {
  name = "${var.name}-state-machine"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "states.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

data "aws_iam_policy_document" "state_machine" {
  #checkov:skip=CKV_AWS_111:Only the CloudWatch Logs delivery actions are unconstrained: they have no resource-level permissions (the state machine's logging needs them).
  statement {
    sid     = "SubmitJobs"
    actions = ["batch:SubmitJob"]
    resources = concat(
      [aws_batch_job_queue.jobs.arn],
      [for d in aws_batch_job_definition.stage : d.arn],
      [for d in aws_batch_job_definition.stage : "${d.arn_prefix}:*"],
    )
  }
  statement {
    sid       = "WatchJobs"
    actions   = ["batch:DescribeJobs"]
    resources = ["*"] #checkov:skip=CKV_AWS_356:batch:DescribeJobs has no resource-level permissions.
  }
  statement {
    sid       = "StopJobs"
    actions   = ["batch:TerminateJob"]
    resources = ["arn:${local.partition}:batch:${var.region}:${local.account_id}:job/*"]
  }
  statement {
    sid       = "SyncRule"
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = [local.events_rule]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
  statement {
    sid       = "NotifyEncrypted"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid = "LogDelivery"
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    resources = ["*"] #checkov:skip=CKV_AWS_356:CloudWatch Logs delivery actions have no resource-level permissions.
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] #checkov:skip=CKV_AWS_356:X-Ray actions have no resource-level permissions.
  }
}

resource "aws_iam_role_policy" "state_machine" {
  role   = aws_iam_role.state_machine.id
  policy = data.aws_iam_policy_document.state_machine.json
}

# --- the schedule ---

resource "aws_iam_role" "scheduler" {
  name = "${var.name}-scheduler"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "scheduler.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "Start"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.nightly.arn]
  }
  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.schedule_dlq.arn]
  }
  statement {
    sid       = "DeadLettersEncrypted"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
