"""Actions that let an identity gain more privilege than it was granted.

An access entry holding any of these is refused unless it says why (``escalation:
{reason: ...}``), and ``lint`` lists them. The lists follow the published AWS privilege
escalation paths (Rhino Security Labs) and their GCP and Azure counterparts.
"""

from __future__ import annotations

import re

_AWS_EXACT = frozenset({
    "iam:PassRole", "sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML",
    "lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
    "lambda:CreateEventSourceMapping", "lambda:AddPermission",
    "ec2:RunInstances", "ec2:ModifyInstanceAttribute", "ecs:RunTask", "ecs:RegisterTaskDefinition",
    "ecs:StartTask", "ecs:UpdateService", "ecs:CreateService",
    "glue:CreateDevEndpoint", "glue:UpdateDevEndpoint", "glue:CreateJob", "glue:UpdateJob",
    "cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:CreateChangeSet",
    "cloudformation:SetStackPolicy", "datapipeline:CreatePipeline", "datapipeline:PutPipelineDefinition",
    "codebuild:CreateProject", "codebuild:UpdateProject", "codebuild:StartBuild",
    "sagemaker:CreateNotebookInstance", "sagemaker:CreatePresignedNotebookInstanceUrl",
    "sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob",
    "ssm:SendCommand", "ssm:StartSession", "ssm:StartAutomationExecution",
    "organizations:AttachPolicy", "kms:CreateGrant", "kms:PutKeyPolicy",
    "secretsmanager:PutResourcePolicy", "s3:PutBucketPolicy", "sqs:SetQueueAttributes",
    "sns:SetTopicAttributes", "ecr:SetRepositoryPolicy",
})
# Any IAM or SSO write: creating users, keys, policies, roles or attaching them.
_AWS_PATTERN = re.compile(
    r"^(iam:(Create|Put|Attach|Update|Add|Set|Upload|Delete|Detach|Remove|Enable|Tag|Untag)"
    r"|sso:|identitystore:(Create|Update))")

_GCP_PATTERN = re.compile(
    r"(\.setIamPolicy$|^iam\.serviceAccounts\.(actAs|getAccessToken|getOpenIdToken|signBlob|signJwt"
    r"|implicitDelegation|setIamPolicy|create|update)$|^iam\.serviceAccountKeys\.create$"
    r"|^iam\.roles\.(create|update|undelete)$|^resourcemanager\..*\.setIamPolicy$"
    r"|^deploymentmanager\.deployments\.(create|update)$|^cloudfunctions\.functions\.(create|update"
    r"|sourceCodeSet)$|^run\.services\.(create|update)$|^compute\.instances\.(create|setMetadata"
    r"|setServiceAccount)$|^compute\.projects\.setCommonInstanceMetadata$"
    r"|^cloudbuild\.builds\.create$|^composer\.environments\.(create|update)$"
    r"|^dataflow\.jobs\.create$|^dataproc\.clusters\.create$|^orgpolicy\.policy\.set$"
    r"|^iam\.workloadIdentityPool)")

_AZURE_PATTERN = re.compile(
    r"(^Microsoft\.Authorization/(roleAssignments|roleDefinitions|policyAssignments|elevateAccess"
    r"|locks)/|^Microsoft\.ManagedIdentity/userAssignedIdentities/(assign/action|write"
    r"|federatedIdentityCredentials/write)|/accessPolicies/write$|^Microsoft\.Compute/virtualMachines"
    r"/(runCommand/action|extensions/write|write)$|^Microsoft\.Web/sites/(config/list/action"
    r"|publishxml/action|write|config/write)$|/listKeys/action$|/regenerateKey/action$"
    r"|^Microsoft\.Automation/automationAccounts/(runbooks|jobs)/write$"
    r"|^Microsoft\.KeyVault/vaults/write$|^Microsoft\.Resources/deployments/write$)",
    re.IGNORECASE)


def is_escalation(provider: str, action: str) -> bool:
    """Whether ``action`` on ``provider`` can be used to gain more privilege."""
    if provider == "aws":
        return action in _AWS_EXACT or bool(_AWS_PATTERN.match(action))
    if provider == "gcp":
        return bool(_GCP_PATTERN.search(action))
    if provider == "azure":
        return bool(_AZURE_PATTERN.search(action))
    return False
