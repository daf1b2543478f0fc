# faverecs serve: ECS on Fargate behind an internet-facing ALB, at least two
# tasks, scaled on CPU. Every task polls CURRENT and switches to a new publish
# within serve.poll_interval_secs.

resource "aws_ecs_cluster" "serve" {
  name = "${var.name}-serve"
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "serve" {
  family                   = "${var.name}-serve"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 4096
  execution_role_arn       = aws_iam_role.serve_execution.arn
  task_role_arn            = aws_iam_role.serve.arn

  # serve downloads the run's serving layout from S3 into /work/tmp (TMPDIR;
  # the root file system is read-only) and maps it: room for two layouts, the
  # served run's and the next one's while it is swapped in.
  ephemeral_storage {
    size_in_gib = 40
  }
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "serve"
    image                  = local.image
    command                = ["serve", "--addr", "0.0.0.0:8080"]
    essential              = true
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/work/tmp", readOnly = false }]
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment = [
      { name = "FAVERECS__STORAGE__URL", value = local.storage_url },
      { name = "AWS_REGION", value = var.region },
      { name = "RUST_LOG", value = "info" },
    ]
    healthCheck = {
      command     = ["CMD", "faverecs", "probe", "http://127.0.0.1:8080/readyz"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.serve.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "serve"
      }
    }
  }])
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "faverecs load balancer: HTTPS (and HTTP, redirected) from anywhere"
  vpc_id      = var.vpc_id

  ingress {
    description = "HTTPS"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  ingress {
    description = "HTTP, redirected to HTTPS"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] #checkov:skip=CKV_AWS_260:Port 80 only answers a redirect to HTTPS.
  }
}

resource "aws_security_group" "serve" {
  name        = "${var.name}-serve"
  description = "faverecs serve tasks: 8080 from the load balancer; HTTPS out to S3 and ECR"
  vpc_id      = var.vpc_id

  ingress {
    description     = "From the load balancer"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }
  egress {
    description = "HTTPS to S3, ECR and CloudWatch Logs"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] #checkov:skip=CKV_AWS_382:AWS service endpoints behind the NAT have no fixed addresses; use VPC endpoints to narrow it.
  }
}

resource "aws_security_group_rule" "alb_to_serve" {
  type                     = "egress"
  description              = "To the serve tasks"
  security_group_id        = aws_security_group.alb.id
  from_port                = 8080
  to_port                  = 8080
  protocol                 = "tcp"
  source_security_group_id = aws_security_group.serve.id
}

resource "aws_lb" "serve" {
  #checkov:skip=CKV_AWS_91:Access logs need a log bucket of their own; request metrics and serve's logs cover operations.
  #checkov:skip=CKV2_AWS_28:A WAF is a per-organisation choice; the service is read-only, with URI, body and time limits of its own.
  name                       = "${var.name}-serve"
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = true
}

resource "aws_lb_target_group" "serve" {
  name        = "${var.name}-serve"
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.serve.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.serve.arn
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.serve.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_ecs_service" "serve" {
  name            = "${var.name}-serve"
  cluster         = aws_ecs_cluster.serve.id
  task_definition = aws_ecs_task_definition.serve.arn
  desired_count   = var.serve_min_tasks
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.serve.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.serve.arn
    container_name   = "serve"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https]
}

resource "aws_appautoscaling_target" "serve" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.serve.name}/${aws_ecs_service.serve.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.serve_min_tasks
  max_capacity       = var.serve_max_tasks
}

resource "aws_appautoscaling_policy" "serve_cpu" {
  name               = "${var.name}-serve-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.serve.service_namespace
  resource_id        = aws_appautoscaling_target.serve.resource_id
  scalable_dimension = aws_appautoscaling_target.serve.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 60
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
