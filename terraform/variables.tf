variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "faverecs"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "bucket_name" {
  description = "The S3 bucket that holds the raw tables, the runs and CURRENT (faverecs storage.url = s3://<bucket>/<storage_prefix>)."
  type        = string
}

variable "storage_prefix" {
  description = "The prefix inside the bucket."
  type        = string
  default     = "v1"
}

variable "image_tag" {
  description = "The tag of the faverecs image in the ECR repository this configuration creates (push it before the first run; see docs/operations.md)."
  type        = string
  default     = "latest"
}

variable "vpc_id" {
  description = "The VPC for the Batch jobs, the serve tasks and the load balancer."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets (with a NAT gateway or VPC endpoints for S3, ECR, Logs and Secrets Manager) for the Batch jobs and the serve tasks."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Subnets for the internet-facing load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the load balancer's HTTPS listener."
  type        = string
}

variable "extract_shards" {
  description = "Array size of the extract steps (1 runs one plain job: Batch arrays need at least 2 children)."
  type        = number
  default     = 4

  validation {
    condition     = var.extract_shards >= 1 && var.extract_shards <= 10000
    error_message = "extract_shards must be between 1 and 10000."
  }
}

variable "score_shards" {
  description = "Array size of the two sharded score steps, users and photos (1 runs plain jobs). Each shard still reads every raw table; see docs/scaling.md."
  type        = number
  default     = 4

  validation {
    condition     = var.score_shards >= 1 && var.score_shards <= 10000
    error_message = "score_shards must be between 1 and 10000."
  }
}

variable "batch_max_vcpus" {
  description = "Most vCPUs the Fargate Spot compute environment runs at once."
  type        = number
  default     = 16
}

variable "score_vcpus" {
  description = "vCPUs of the score job (Fargate: 0.25 to 16)."
  type        = number
  default     = 4
}

variable "score_memory_mib" {
  description = "Memory of the score job, in MiB (Fargate: 2 GiB per vCPU at least)."
  type        = number
  default     = 16384
}

variable "schedule_expression" {
  description = "When the night starts (EventBridge Scheduler syntax)."
  type        = string
  default     = "cron(30 2 * * ? *)"
}

variable "schedule_timezone" {
  description = "The schedule's time zone (IANA name)."
  type        = string
  default     = "Europe/London"
}

variable "serve_min_tasks" {
  description = "Fewest serve tasks (at least 2, in different subnets)."
  type        = number
  default     = 2

  validation {
    condition     = var.serve_min_tasks >= 2
    error_message = "serve_min_tasks must be at least 2."
  }
}

variable "serve_max_tasks" {
  description = "Most serve tasks autoscaling may run."
  type        = number
  default     = 6
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps job, serve and state machine logs."
  type        = number
  default     = 365
}

variable "noncurrent_days" {
  description = "Days S3 keeps an object's old versions (what gc and each import replaced or removed) before expiring them."
  type        = number
  default     = 30
}

variable "failed_users_threshold" {
  description = "Alarm when one extract's failed users exceed this."
  type        = number
  default     = 50
}

variable "alert_email" {
  description = "Address subscribed to the alarms topic (empty: none; subscribe later)."
  type        = string
  default     = ""
}
