# The image, the Fargate Spot compute environment, the job queue, and one job
# definition per stage. One image runs every stage (see the Dockerfile).

resource "aws_ecr_repository" "faverecs" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.data.arn
  }
}

locals {
  image       = "${aws_ecr_repository.faverecs.repository_url}:${var.image_tag}"
  storage_url = "s3://${aws_s3_bucket.data.bucket}/${var.storage_prefix}"

  # Each stage: the faverecs command it runs, its size, and whether it calls the
  # Flickr API (only those get the key). scripts/infra_tests checks every
  # command with `faverecs <command> --help`. The extract stages and the two
  # score steps run as array jobs: each child reads its shard from
  # AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ARRAY_SIZE (set by the state
  # machine), and the score steps their run from FAVERECS_RUN_ID (the
  # execution's start time, also set by the state machine).
  stages = {
    extract_tracked   = { command = ["extract", "--phase", "tracked"], vcpus = 0.5, memory = 1024, flickr = true }
    extract_neighbors = { command = ["extract", "--phase", "neighbors"], vcpus = 0.5, memory = 1024, flickr = true }
    fold              = { command = ["extract", "--fold-only"], vcpus = 2, memory = 8192, flickr = false }
    score_users       = { command = ["score", "--step", "users"], vcpus = var.score_vcpus, memory = var.score_memory_mib, flickr = false }
    score_photos      = { command = ["score", "--step", "photos"], vcpus = var.score_vcpus, memory = var.score_memory_mib, flickr = false }
    score_finish      = { command = ["score", "--finish"], vcpus = var.score_vcpus, memory = var.score_memory_mib, flickr = false }
    publish           = { command = ["publish"], vcpus = 0.5, memory = 1024, flickr = false }
    gc                = { command = ["gc"], vcpus = 0.5, memory = 1024, flickr = false }
  }
}

resource "aws_security_group" "jobs" {
  name        = "${var.name}-jobs"
  description = "faverecs Batch jobs: no inbound; HTTPS out (Flickr, S3, ECR, Logs, Secrets Manager)"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to the Flickr API and the AWS endpoints"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] #checkov:skip=CKV_AWS_382:The jobs call api.flickr.com, whose addresses are not fixed.
  }
}

resource "aws_batch_compute_environment" "spot" {
  name  = "${var.name}-spot"
  type  = "MANAGED"
  state = "ENABLED"

  compute_resources {
    type               = "FARGATE_SPOT"
    max_vcpus          = var.batch_max_vcpus
    subnets            = var.private_subnet_ids
    security_group_ids = [aws_security_group.jobs.id]
  }
}

resource "aws_batch_job_queue" "jobs" {
  name     = "${var.name}-jobs"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.spot.arn
  }
}

resource "aws_batch_job_definition" "stage" {
  for_each              = local.stages
  name                  = "${var.name}-${replace(each.key, "_", "-")}"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  # A Spot reclaim or a host failure is retried; a faverecs failure (its exit
  # code) is not: the state machine's failure branch reports it.
  retry_strategy {
    attempts = 3
    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "CannotPullContainerError*"
      action    = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = 6 * 3600
  }

  container_properties = jsonencode({
    image            = local.image
    command          = each.value.command
    jobRoleArn       = aws_iam_role.job.arn
    executionRoleArn = aws_iam_role.job_execution.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(each.value.vcpus) },
      { type = "MEMORY", value = tostring(each.value.memory) },
    ]
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    networkConfiguration         = { assignPublicIp = "DISABLED" }
    readonlyRootFilesystem       = true
    # score and score --finish build the run's serving layout in /work/tmp
    # (TMPDIR) before storing it: a volume on the job's ephemeral storage.
    ephemeralStorage = { sizeInGiB = 40 }
    volumes          = [{ name = "tmp" }]
    mountPoints      = [{ sourceVolume = "tmp", containerPath = "/work/tmp", readOnly = false }]
    environment = [
      { name = "FAVERECS__STORAGE__URL", value = local.storage_url },
      { name = "AWS_REGION", value = var.region },
      { name = "RUST_LOG", value = "info" },
    ]
    # The Flickr API key: from Secrets Manager, injected by ECS at start; never
    # a plain environment value, never in this file or an output.
    secrets = each.value.flickr ? [
      { name = "FLICKR_API_KEY", valueFrom = aws_secretsmanager_secret.flickr_api_key.arn },
    ] : []
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.jobs.name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  })
}

# The key itself is set by the operator (docs/operations.md), never by terraform.
resource "aws_secretsmanager_secret" "flickr_api_key" {
  #checkov:skip=CKV2_AWS_57:Flickr keys cannot be rotated by a Lambda; rotation is the documented manual step.
  name        = "${var.name}/flickr-api-key"
  description = "The Flickr API key faverecs extract uses (set its value with aws secretsmanager put-secret-value)."
  kms_key_id  = aws_kms_key.data.arn
}
