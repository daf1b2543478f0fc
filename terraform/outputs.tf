# Nothing secret: the Flickr API key is only in Secrets Manager.

output "bucket" {
  description = "The storage bucket; faverecs storage.url is s3://<bucket>/<storage_prefix>."
  value       = aws_s3_bucket.data.bucket
}

output "storage_url" {
  description = "FAVERECS__STORAGE__URL for a faverecs command run by hand against this deployment."
  value       = local.storage_url
}

output "image_repository" {
  description = "Push the faverecs image here (docs/operations.md)."
  value       = aws_ecr_repository.faverecs.repository_url
}

output "state_machine_arn" {
  description = "The nightly state machine; start it by hand with aws stepfunctions start-execution."
  value       = aws_sfn_state_machine.nightly.arn
}

output "job_queue" {
  description = "The Batch job queue."
  value       = aws_batch_job_queue.jobs.arn
}

output "serve_url" {
  description = "The service's address."
  value       = "https://${aws_lb.serve.dns_name}/"
}

output "athena_workgroup" {
  description = "The Athena workgroup of docs/analysts.md's queries."
  value       = aws_athena_workgroup.faverecs.name
}

output "alerts_topic" {
  description = "The alarms' SNS topic; subscribe to it."
  value       = aws_sns_topic.alerts.arn
}
