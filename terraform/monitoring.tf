# Logs, the alarms topic, alarms and a dashboard. The Batch jobs write
# CloudWatch Embedded Metric Format lines (namespace faverecs, dimension
# Stage): Calls, Retries, FetchedUsers, FailedUsers, Rows (extract), PhotoRecs,
# RowsOut (score), Published (publish), RunsRemoved (gc), StageSeconds and
# PeakMemory (every stage).

resource "aws_cloudwatch_log_group" "jobs" {
  name              = "/${var.name}/jobs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_cloudwatch_log_group" "serve" {
  name              = "/${var.name}/serve"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_cloudwatch_log_group" "state_machine" {
  name              = "/aws/vendedlogs/states/${var.name}-nightly"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = aws_kms_key.data.arn
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alert_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_cloudwatch_metric_alarm" "run_failed" {
  alarm_name          = "${var.name}-nightly-failed"
  alarm_description   = "A nightly execution failed; nothing was published that night. See the SNS message, the state machine's execution and the job logs (docs/operations.md)."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsFailed"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.nightly.arn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "no_publish" {
  alarm_name          = "${var.name}-no-publish-36h"
  alarm_description   = "No successful publish in 36 hours: the recommendations are going stale. Check the last executions (docs/operations.md)."
  namespace           = "faverecs"
  metric_name         = "Published"
  dimensions          = { Stage = "publish" }
  statistic           = "Sum"
  period              = 21600
  evaluation_periods  = 6
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "serve_5xx" {
  alarm_name          = "${var.name}-serve-5xx"
  alarm_description   = "serve answered 5xx (or the load balancer found no healthy task): see /readyz and the serve logs."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.serve.arn_suffix, TargetGroup = aws_lb_target_group.serve.arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 5
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "failed_users" {
  alarm_name          = "${var.name}-extract-failed-users"
  alarm_description   = "An extract had more failed users than var.failed_users_threshold: Flickr errors or a throttled key (the job log lists the first failures)."
  namespace           = "faverecs"
  metric_name         = "FailedUsers"
  dimensions          = { Stage = "extract" }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = var.failed_users_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_dashboard" "faverecs" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title   = "Extract: API calls, retries, failed users"
          region  = var.region
          stat    = "Sum"
          period  = 3600
          metrics = [["faverecs", "Calls", "Stage", "extract"], [".", "Retries", ".", "."], [".", "FailedUsers", ".", "."]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Stage seconds"
          region  = var.region
          stat    = "Maximum"
          period  = 3600
          metrics = [for s in ["extract", "score", "gc"] : ["faverecs", "StageSeconds", "Stage", s]]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Peak memory (MiB) and photo recs"
          region  = var.region
          stat    = "Maximum"
          period  = 3600
          metrics = [["faverecs", "PeakMemory", "Stage", "score"], [".", "PhotoRecs", ".", "."]]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Serve: requests and 5xx"
          region  = var.region
          stat    = "Sum"
          period  = 300
          metrics = [["AWS/ApplicationELB", "RequestCount", "LoadBalancer", aws_lb.serve.arn_suffix], [".", "HTTPCode_Target_5XX_Count", ".", "."]]
        }
      },
      {
        type = "alarm", x = 0, y = 12, width = 24, height = 3
        properties = {
          title  = "Alarms"
          alarms = [aws_cloudwatch_metric_alarm.run_failed.arn, aws_cloudwatch_metric_alarm.no_publish.arn, aws_cloudwatch_metric_alarm.serve_5xx.arn, aws_cloudwatch_metric_alarm.failed_users.arn]
        }
      },
    ]
  })
}
